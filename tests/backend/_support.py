"""Shared helpers of the `JobBackend` tests: circuits, a backend factory, condition waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from asyncjob import JobBackend
from asyncjob.local import ThreadedScheduler

from ..conftest import BELL

__all__ = ["BELL", "TOKEN", "hangs", "loop_threads", "make_backend", "wait_until"]

TOKEN = "backend-tests-secret-token-7Qx9"


def make_backend(scheduler: ThreadedScheduler, **options: Any) -> JobBackend:
    """A backend on `scheduler` that polls every 10 ms."""
    options.setdefault("polling_interval", 0.01)
    options.setdefault("timeout", 10.0)
    return JobBackend(scheduler.base_url, scheduler.token, **options)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Block until `condition()` holds (checked every 5 ms); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        time.sleep(0.005)


def hangs(scheduler: ThreadedScheduler) -> int:
    """How many requests the scheduler has made hang so far."""
    return scheduler.stats.faults_injected.get("hang", 0)


def loop_threads() -> list[threading.Thread]:
    """The event loop threads of the backends alive in this process."""
    return [t for t in threading.enumerate() if t.name == "asyncjob-loop"]
