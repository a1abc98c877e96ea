"""`ThreadedScheduler`: a `LocalScheduler` served from a background thread, for blocking code.

The thread is an anyio blocking portal (`anyio.from_thread.start_blocking_portal`),
the same bridge `JobBackend` uses: the scheduler starts, stops and is waited on
through the portal, and everything read from the calling thread (`stats`,
`jobs()`, `fault_log`...) is a snapshot of the shared `SchedulerState`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._jobs import JobRecord
from ._state import SchedulerView

if TYPE_CHECKING:
    from ._scheduler import LocalScheduler

__all__ = ["ThreadedScheduler"]

T = TypeVar("T")


class ThreadedScheduler(SchedulerView):
    """A `LocalScheduler` running on its own event loop thread, for blocking code.

    ``with LocalScheduler(...).run_in_thread() as s:`` starts the thread and
    returns once the server is accepting connections; leaving the block stops it
    and joins the thread. Attributes read from the calling thread (`stats`,
    `jobs()`, `fault_log`) are snapshots; `faults` can be set from any thread.
    """

    def __init__(self, scheduler: LocalScheduler) -> None:
        self.scheduler = scheduler
        self._state = scheduler._state
        self._portal: BlockingPortal | None = None
        self._stack: contextlib.ExitStack | None = None

    def __repr__(self) -> str:
        return f"<ThreadedScheduler {self.scheduler!r}>"

    def start(self) -> ThreadedScheduler:
        """Start the loop thread and the server; returns once serving."""
        if self._stack is not None:
            raise RuntimeError("already started")
        with contextlib.ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal(name="asyncjob-local-scheduler"))
            portal.call(self.scheduler.start)
            self._portal, self._stack = portal, stack.pop_all()
        return self

    def stop(self) -> None:
        """Stop the server and join the thread."""
        portal, stack = self._portal, self._stack
        self._portal = self._stack = None
        if portal is None or stack is None:
            return
        with stack:
            try:
                portal.call(self.scheduler.stop)
            finally:
                # Like the end of asyncio.run: what is still running on the loop is cancelled.
                portal.call(portal.stop, True)

    def __enter__(self) -> ThreadedScheduler:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def call(
        self, factory: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = None
    ) -> T:
        """Run ``factory()`` on the scheduler's loop and return its result."""
        if self._portal is None:
            raise RuntimeError("the scheduler thread is not running")
        future: Future[T] = self._portal.start_task_soon(factory)
        return future.result(timeout)

    def restart(self) -> None:
        """Stop and start the server again on the same port (jobs are kept)."""
        self.call(self.scheduler.stop)
        self.call(self.scheduler.start)

    def wait_for_status(
        self, job_id: str, *statuses: str, timeout: float | None = 10.0
    ) -> JobRecord:
        """Block until the job is in one of `statuses` (default: any terminal one)."""

        async def wait() -> JobRecord:
            with anyio.fail_after(timeout):
                return await self.scheduler.wait_for_status(job_id, *statuses)

        return self.call(wait)
