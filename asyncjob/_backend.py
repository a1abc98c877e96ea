"""`JobBackend`: the blocking facade over `AsyncJobClient`, usable from any thread.

Each backend runs one event loop in a background thread (an anyio blocking
portal, started on first use) and one `AsyncJobClient` on it, so every call, from
every thread, shares one connection pool. A calling thread never blocks inside
the loop: it waits for its call's future in short slices, runs the callbacks the
call forwards to it, and watches its `threading.Event`; when the event is set (or
Ctrl+C lands) it cancels the call's cancel scope and waits for the call's cleanup.

A backend inherited across `fork()` leaves the parent's loop alone (its thread
does not exist in the child) and starts its own on first use, detected by PID.
Every wait on the loop thread checks that the thread is alive.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from functools import partial
from types import FrameType, TracebackType
from typing import Any, NoReturn, ParamSpec, TypeAlias, TypeVar

import anyio
from anyio.from_thread import start_blocking_portal

from ._client import AsyncJobClient
from ._config import ClientConfig
from ._errors import AsyncJobError, ClientClosedError, EventLoopError, ExecutionCancelledError
from ._forksafe import ForkSafeLock, abandon
from ._journal import Journal
from ._models import ExecutionResult, JobStatus, Response

__all__ = ["JobBackend"]

logger = logging.getLogger("asyncjob")

T = TypeVar("T")
P = ParamSpec("P")

_SLICE = 0.02
"""Seconds between two looks at a caller's cancellation event (well inside 100 ms)."""

_LIVENESS = 0.5
"""Seconds between two checks that the loop thread is alive, while waiting without an event."""

_Inbox: TypeAlias = queue.SimpleQueue[Callable[[], None] | None]
"""Callbacks forwarded from the loop to the calling thread; None means the call is done."""


class _Task:
    """The cancel handle of one call running on the loop; its methods run on the loop thread."""

    def __init__(self) -> None:
        self._scope: anyio.CancelScope | None = None
        self._reason: str | None = None

    def cancel(self, reason: str) -> None:
        """Cancel the call, or make it stop at once if it has not started yet."""
        if self._reason is None:
            self._reason = reason
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, func: Callable[[], Awaitable[T]]) -> T:
        """Await `func()`; once cancelled, raise `ExecutionCancelledError` with the reason."""
        with anyio.CancelScope() as self._scope:
            if self._reason is None:
                return await func()
        raise ExecutionCancelledError(self._reason)


class _Loop:
    """The background loop of one backend: its thread, its portal, and the client they share."""

    def __init__(self, config: ClientConfig) -> None:
        with contextlib.ExitStack() as stack:
            self.portal = stack.enter_context(start_blocking_portal(name="asyncjob-loop"))
            self.thread = self.portal.call(threading.current_thread)
            self.pid = os.getpid()
            self.client = AsyncJobClient.from_config(config)
            self.portal.call(self.client.__aenter__)
            self._tasks: set[_Task] = set()
            self._idle: anyio.Event | None = None  # set once closing, when no call is left
            self._stack = stack.pop_all()

    @property
    def inherited(self) -> bool:
        """True in a forked child: the loop's thread lives only in the parent process."""
        return self.pid != os.getpid()

    def check_alive(self) -> None:
        """Raise `EventLoopError` if the loop thread is gone (a wait on it would never end)."""
        if self.inherited or not self.thread.is_alive():
            raise EventLoopError(
                "the backend's event loop thread has stopped; create a new JobBackend"
            )

    def start(self, task: _Task, func: Callable[[AsyncJobClient], Awaitable[T]]) -> Future[T]:
        """Start `func(client)` on the loop as `task`."""
        self.check_alive()
        return self.portal.start_task_soon(self._run, task, func)

    async def _run(self, task: _Task, func: Callable[[AsyncJobClient], Awaitable[T]]) -> T:
        self._tasks.add(task)
        if self._idle is not None:
            task.cancel("the backend was closed")
        try:
            return await task.run(partial(func, self.client))
        finally:
            self._tasks.discard(task)
            if self._idle is not None and not self._tasks:
                self._idle.set()

    def cancel(self, task: _Task, future: Future[Any] | None, reason: str) -> None:
        """From a calling thread: cancel `task` and wait until its cleanup has run."""
        if self.inherited or not self.thread.is_alive():
            return  # nothing runs on a loop that is gone
        with contextlib.suppress(RuntimeError):  # the portal has stopped: nothing is running
            self.portal.call(task.cancel, reason)
        while future is not None and not future.done() and self.thread.is_alive():
            concurrent.futures.wait([future], timeout=_LIVENESS)

    def close(self) -> None:
        """Cancel the calls still running, close the client, stop the loop, join its thread."""
        if self.inherited:  # a forked child: the parent's loop is not ours to stop
            abandon(self)
            return
        if not self.thread.is_alive():
            return  # nothing to stop, and nobody to answer a call
        if threading.current_thread() is self.thread:  # the GC ran our finalizer on the loop
            threading.Thread(target=self.close, name="asyncjob-close", daemon=True).start()
            return
        try:
            self.portal.call(self._shutdown)
        finally:
            self._stack.close()

    async def _shutdown(self) -> None:
        self._idle = anyio.Event()
        for task in self._tasks:
            task.cancel("the backend was closed")
        if self._tasks:
            await self._idle.wait()
        await self.client.aclose()


class JobBackend:
    """Run circuit batches as remote jobs from blocking code: the `AsyncJobBackend` protocol.

    ```python
    with JobBackend(base_url, token) as backend:
        handle = backend.submit_circuits({"bell": BELL})
        backend.poll_job_status(handle, loop_until_complete=True)
        result = backend.get_job_results(handle)
    ```
    Takes the options of `AsyncJobClient`, validated at construction. Safe to
    share between threads and to call from code running inside an event loop.
    Callbacks run in the calling thread. After `close()` every call raises
    `RuntimeError`: a closed backend stays closed. Pickles to its configuration.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        shots: int = 1000,
        **options: Any,
    ) -> None:
        self._setup(ClientConfig.build(base_url, token, shots, **options))

    def _setup(self, config: ClientConfig) -> None:
        self._config = config
        self._lock = ForkSafeLock()
        self._loop: _Loop | None = None
        self._finalizer: weakref.finalize[[], JobBackend] | None = None
        self._closed = False

    @classmethod
    def from_config(cls, config: ClientConfig) -> JobBackend:
        """A backend for an already validated configuration."""
        backend = cls.__new__(cls)
        backend._setup(config)
        return backend

    def __reduce__(self) -> tuple[Callable[[ClientConfig], JobBackend], tuple[ClientConfig]]:
        # Only the configuration travels; the copy starts its own loop when first used.
        return (type(self).from_config, (self._config,))

    @property
    def config(self) -> ClientConfig:
        """The validated configuration."""
        return self._config

    @property
    def shots(self) -> int:
        """Number of measurement shots applied to sampling-mode circuits."""
        return self._config.shots

    def __repr__(self) -> str:
        closed = ", closed" if self._closed else ""
        return f"JobBackend(base_url={self._config.base_url!r}, shots={self.shots}{closed})"

    def __enter__(self) -> JobBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel running calls, close the connection pool and stop the loop thread.

        Idempotent. Calls made afterwards raise `RuntimeError`.
        """
        with self._lock:
            self._closed = True
            finalizer = self._finalizer
        if finalizer is not None:
            finalizer()

    # -- the protocol -----------------------------------------------------

    def submit_circuits(
        self,
        circuits: Mapping[str, str] | Iterable[str],
        *,
        cancellation_event: threading.Event | None = None,
        **kwargs: Any,
    ) -> ExecutionResult:
        """Validate and submit a batch of QASM circuits; return the job handle.

        A set `cancellation_event` abandons the requests in flight and cancels a
        job already created, then raises `ExecutionCancelledError`.
        """
        return self._call(
            "submission", cancellation_event, lambda c: c.submit_circuits(circuits, **kwargs)
        )

    def poll_job_status(
        self,
        execution_result: ExecutionResult | str,
        loop_until_complete: bool = False,
        on_complete: Callable[[Response], None] | None = None,
        verbose: bool = True,
        progress_callback: Callable[[int, str], None] | None = None,
        cancellation_event: threading.Event | None = None,
    ) -> JobStatus:
        """Query the job's status once, or poll until it is terminal; return the last status.

        Callbacks run in the calling thread. A set `cancellation_event` ends the
        wait (not the job) within 100 ms. Without an event, a first Ctrl+C while
        looping cancels the job too and raises `ExecutionCancelledError`; a
        second one raises `KeyboardInterrupt` at once.
        """
        inbox: _Inbox = queue.SimpleQueue()
        complete = _in_caller_thread(inbox, on_complete)
        progress = _in_caller_thread(inbox, progress_callback)
        interrupt = None
        if loop_until_complete and cancellation_event is None:
            interrupt = partial(self._cancel_after_interrupt, execution_result)
        return self._call(
            "polling",
            cancellation_event,
            lambda c: c.poll_job_status(
                execution_result, loop_until_complete, complete, verbose, progress
            ),
            inbox=inbox,
            on_interrupt=interrupt,
        )

    def get_job_results(self, execution_result: ExecutionResult | str) -> ExecutionResult:
        """Fetch and decode the results of a COMPLETED job, in submission order."""
        return self._call("fetching results", None, lambda c: c.get_job_results(execution_result))

    def cancel_job(self, execution_result: ExecutionResult | str) -> Response:
        """Cancel a job; a job already terminal (409) is not an error."""
        return self._call("cancelling", None, lambda c: c.cancel_job(execution_result))

    # -- extras -----------------------------------------------------------

    def delete_job(self, execution_result: ExecutionResult | str) -> Response:
        """Remove the job record from the scheduler."""
        return self._call("deleting", None, lambda c: c.delete_job(execution_result))

    def run(
        self,
        circuits: Mapping[str, str] | Iterable[str],
        *,
        cancellation_event: threading.Event | None = None,
        **kwargs: Any,
    ) -> ExecutionResult:
        """Submit, wait and fetch: the results of a batch, or `JobFailedError`.

        Cancelling (event or Ctrl+C) cancels the job.
        """
        return self._call("run", cancellation_event, lambda c: c.run(circuits, **kwargs))

    def resume(
        self, execution_result: ExecutionResult | str, *, finish: bool = True
    ) -> ExecutionResult:
        """Re-attach to a job recorded in the journal; see `AsyncJobClient.resume`."""
        return self._call("resuming", None, lambda c: c.resume(execution_result, finish=finish))

    @property
    def journal(self) -> Journal | None:
        """The job journal of this backend's client (None when disabled)."""
        return self._running().client.journal

    # -- plumbing ---------------------------------------------------------

    def _running(self) -> _Loop:
        with self._lock:
            if self._closed:
                raise ClientClosedError(f"{self!r} is closed; create a new one")
            if self._loop is not None and self._loop.inherited:
                # Forked: the loop thread is the parent's. Start one for this process.
                if self._finalizer is not None:
                    self._finalizer.detach()
                abandon(self._loop)
                self._loop = None
            if self._loop is None:
                self._loop = _Loop(self._config)
                self._finalizer = weakref.finalize(self, self._loop.close)
            return self._loop

    def _call(
        self,
        what: str,
        event: threading.Event | None,
        func: Callable[[AsyncJobClient], Awaitable[T]],
        *,
        inbox: _Inbox | None = None,
        on_interrupt: Callable[[], T] | None = None,
    ) -> T:
        """Run `func(client)` on the loop and wait for it here, watching `event`.

        On Ctrl+C (or an exception from a callback) the call is cancelled and its
        cleanup awaited before the exception goes on, or `on_interrupt()` answers
        instead; a second Ctrl+C during that cleanup propagates at once.
        """
        if event is not None and event.is_set():
            raise ExecutionCancelledError(f"{what} cancelled before it started")
        loop = self._running()
        inbox = queue.SimpleQueue() if inbox is None else inbox
        task = _Task()
        future: Future[T] | None = None
        try:
            future = loop.start(task, func)
            future.add_done_callback(lambda _: inbox.put(None))
            finished = _wait(inbox, event, loop)
        except BaseException as exc:
            loop.cancel(task, future, f"{what} interrupted")
            if on_interrupt is not None and isinstance(exc, KeyboardInterrupt):
                return on_interrupt()
            if future is None and type(exc) is RuntimeError:  # the portal had stopped
                raise ClientClosedError(f"{self!r} is closed; create a new one") from None
            raise
        if not finished:
            loop.cancel(task, future, f"{what} cancelled by the cancellation event")
        return _outcome(future)

    def _cancel_after_interrupt(self, execution_result: ExecutionResult | str) -> NoReturn:
        """After a first Ctrl+C while waiting for a job: cancel the job too (best effort)."""
        try:
            self.cancel_job(execution_result)
            outcome = "the job was cancelled"
        except AsyncJobError as exc:
            logger.warning("could not cancel the job after Ctrl+C: %s", exc)
            outcome = "cancelling the job failed"
        raise ExecutionCancelledError(f"polling interrupted by Ctrl+C; {outcome}") from None


def _in_caller_thread(
    inbox: _Inbox, callback: Callable[P, None] | None
) -> Callable[P, None] | None:
    """A stand-in for `callback` that has the calling thread run it, in order."""
    if callback is None:
        return None

    def forward(*args: P.args, **kwargs: P.kwargs) -> None:
        inbox.put(partial(callback, *args, **kwargs))

    return forward


def _wait(inbox: _Inbox, event: threading.Event | None, loop: _Loop) -> bool:
    """Run forwarded callbacks until the call is done (True) or `event` is set (False).

    Raises `EventLoopError` if the loop thread dies meanwhile.
    """
    while event is None or not event.is_set():
        try:
            callback = inbox.get(timeout=_LIVENESS if event is None else _SLICE)
        except queue.Empty:
            loop.check_alive()
            continue
        if callback is None:
            return True
        callback()
    return False


def _outcome(future: Future[T]) -> T:
    """The call's result, or its exception raised here without the portal's frames."""
    if future.cancelled():
        raise ExecutionCancelledError("the backend was closed")
    exc = future.exception()
    if exc is None:
        return future.result()
    raise exc.with_traceback(_without_plumbing(exc.__traceback__))


def _without_plumbing(tb: TracebackType | None) -> TracebackType | None:
    """Skip the frames of anyio's portal and of this module at the top of a loop traceback."""
    while tb is not None and _is_plumbing(tb.tb_frame):
        tb = tb.tb_next
    return tb


def _is_plumbing(frame: FrameType) -> bool:
    module = str(frame.f_globals.get("__name__", ""))
    return module == __name__ or module.split(".")[0] == "anyio"
