"""Fixtures of the `JobBackend` tests: threaded local schedulers and a backend on one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from asyncjob import JobBackend
from asyncjob.local import LocalScheduler, ThreadedScheduler

from ._support import TOKEN, make_backend


@pytest.fixture
def serve() -> Iterator[Callable[..., ThreadedScheduler]]:
    """Start local schedulers on background threads; all are stopped after the test."""
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> ThreadedScheduler:
            options.setdefault("job_duration", 0.05)
            options.setdefault("executor", "sampler")
            return stack.enter_context(LocalScheduler(token=TOKEN, **options).run_in_thread())

        yield start


@pytest.fixture
def scheduler(serve: Callable[..., ThreadedScheduler]) -> ThreadedScheduler:
    """A scheduler whose jobs take 50 ms."""
    return serve()


@pytest.fixture
def slow_scheduler(serve: Callable[..., ThreadedScheduler]) -> ThreadedScheduler:
    """A scheduler whose jobs run for an hour: they end only when cancelled."""
    return serve(job_duration=3600.0)


@pytest.fixture
def backend(scheduler: ThreadedScheduler) -> Iterator[JobBackend]:
    """A backend on `scheduler`, closed after the test."""
    with make_backend(scheduler) as backend:
        yield backend


@pytest.fixture
def slow_backend(slow_scheduler: ThreadedScheduler) -> Iterator[JobBackend]:
    """A backend on `slow_scheduler`, closed after the test."""
    with make_backend(slow_scheduler) as backend:
        yield backend
