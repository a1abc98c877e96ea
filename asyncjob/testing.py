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
installed (so it works in both its strict and auto modes).
"""

from __future__ import annotations

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
