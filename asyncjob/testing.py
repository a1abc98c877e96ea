"""pytest fixtures for code that talks to a scheduler: a running local one.

Loaded automatically (entry point ``pytest11``) wherever asyncjob is installed,
so this module imports only pytest at load time; the scheduler itself is
imported when a fixture is first used.

- ``local_scheduler`` (async, function scope): a running in-process
  `asyncjob.local.LocalScheduler` with the ``sampler`` executor and 50 ms jobs.
  Use ``local_scheduler.base_url`` and ``local_scheduler.token``; set
  ``local_scheduler.faults = FaultConfig(...)`` to inject faults.
- ``local_scheduler_thread`` (sync, function scope): the same on a background
  event loop thread, for blocking code.

The async fixture is a ``pytest_asyncio`` fixture when pytest-asyncio is
installed, and an ``async def`` test that takes ``local_scheduler`` as an
argument is marked ``asyncio`` for you (unless it carries an ``anyio`` or
``trio`` mark), so it runs in pytest-asyncio's strict mode (its default)
without ``@pytest.mark.asyncio``.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .local import LocalScheduler, ThreadedScheduler

__all__ = ["local_scheduler", "local_scheduler_thread"]

JOB_DURATION = 0.05
"""Seconds each job of the fixtures' schedulers takes."""


def _async_fixture(function: Any) -> Any:
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - plain pytest (e.g. with anyio's plugin)
        return pytest.fixture(function)
    return pytest_asyncio.fixture(function)


_OTHER_RUNNERS = ("asyncio", "anyio", "trio")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark ``async def`` tests taking ``local_scheduler`` as asyncio tests (strict mode)."""
    if not inspect.iscoroutinefunction(obj) or not collector.funcnamefilter(name):  # type: ignore[attr-defined]
        return
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):  # pragma: no cover - signature-less callables
        return
    if "local_scheduler" not in parameters:
        return
    own = [mark.name for mark in getattr(obj, "pytestmark", [])]
    if any(runner in own for runner in _OTHER_RUNNERS):
        return
    if any(collector.get_closest_marker(runner) for runner in _OTHER_RUNNERS):
        return
    try:
        import pytest_asyncio  # noqa: F401
    except ImportError:  # pragma: no cover - no asyncio runner to hand the test to
        return
    pytest.mark.asyncio(obj)


@_async_fixture
async def local_scheduler() -> AsyncIterator[LocalScheduler]:
    """A running local scheduler (sampler executor, short jobs) on 127.0.0.1."""
    from .local import LocalScheduler

    async with LocalScheduler(executor="sampler", job_duration=JOB_DURATION, port=0) as scheduler:
        yield scheduler


@pytest.fixture
def local_scheduler_thread() -> Iterator[ThreadedScheduler]:
    """A local scheduler served from a background thread, for blocking code."""
    from .local import LocalScheduler

    with LocalScheduler(executor="sampler", job_duration=JOB_DURATION).run_in_thread() as threaded:
        yield threaded
