"""Polling many jobs with a few tasks: a heap of jobs ordered by the time of their next poll."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from ._context import job_id_of
from ._errors import AsyncJobError
from ._models import ExecutionResult, JobStatus
from ._status import Polling, StatusFollower

__all__ = ["JobPollers"]

_ADDED_PER_TURN = 500
"""Jobs `run` adds in one turn of the event loop (a few microseconds each)."""
_Due = tuple[float, int, ExecutionResult, Polling]
"""A job waiting for its next poll: when, the order it came in (ties), its handle and loop."""


class JobPollers:
    """Polls jobs until each is terminal, a few at a time, each at its time.

    A task per job would hold some forty objects while it waits (its chain of
    coroutines, the task group's state for it); with thousands of jobs the
    garbage collector's full passes over them stall the event loop for a
    hundred milliseconds and more. Here a waiting job is a heap entry and its
    `Polling`, and a fixed number of workers send the polls that are due, the
    earliest first. `finish(handle, status)` gets each job once terminal,
    `fail(handle, error)` each job whose polling failed.
    """

    def __init__(
        self,
        follower: StatusFollower,
        finish: Callable[[ExecutionResult, JobStatus], Awaitable[None]],
        fail: Callable[[ExecutionResult, Exception], None],
    ) -> None:
        self._follower = follower
        self._finish = finish
        self._fail = fail
        self._due: list[_Due] = []
        self._order = itertools.count()
        self._open = 0
        """Jobs added and not yet finished or failed."""
        self._sources = 0
        """Tasks that may still add jobs (`source`)."""
        self._changed = anyio.Event()

    def add(self, handle: ExecutionResult) -> None:
        """Poll this job from now on (at once); a handle without a valid id fails at once."""
        try:
            polling = self._follower.polling(job_id_of(handle))
        except ValueError as exc:
            self._fail(handle, exc)
            return
        self._open += 1
        self._at(anyio.current_time(), handle, polling)

    def source(self) -> contextlib.AbstractContextManager[None]:
        """A task that may add jobs until the returned context exits, counted from now.

        `run` does not end while one is open: take it before starting the task.
        """
        self._sources += 1

        @contextlib.contextmanager
        def open_until_exit() -> Iterator[None]:
            try:
                yield
            finally:
                self._sources -= 1
                self._changed.set()

        return open_until_exit()

    async def run(self, workers: int, handles: Sequence[ExecutionResult] = ()) -> None:
        """Poll `handles` and the jobs added, with `workers` tasks, until every one is
        settled and no source is open.

        `handles` are added `_ADDED_PER_TURN` per turn of the event loop.
        """
        ready_send, ready = anyio.create_memory_object_stream[_Due](math.inf)
        with ready:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(self._work, ready)
                for start in range(0, len(handles), _ADDED_PER_TURN):
                    if start:
                        await anyio.lowlevel.checkpoint()
                    for handle in handles[start : start + _ADDED_PER_TURN]:
                        self.add(handle)
                with ready_send:  # closed at the end: the workers stop
                    while self._open or self._sources:
                        now = anyio.current_time()
                        while self._due and self._due[0][0] <= now:
                            ready_send.send_nowait(heapq.heappop(self._due))
                        self._changed = anyio.Event()
                        wait = self._due[0][0] - now if self._due else math.inf
                        with anyio.move_on_after(wait):
                            await self._changed.wait()

    def _at(self, when: float, handle: ExecutionResult, polling: Polling) -> None:
        """Queue the job's next poll at `when` (wakes `run` if it is the earliest)."""
        heapq.heappush(self._due, (when, next(self._order), handle, polling))
        if self._due[0][3] is polling:
            self._changed.set()

    async def _work(self, ready: MemoryObjectReceiveStream[_Due]) -> None:
        async for _, _, handle, polling in ready:
            try:
                _, status = await self._follower.poll_once(polling, hold=False)
                if not status.is_terminal:
                    self._at(self._follower.next_poll(polling, status), handle, polling)
                    continue
            except (AsyncJobError, ValueError) as exc:
                self._fail(handle, exc)
            else:
                await self._finish(handle, status)
            self._open -= 1
            if not self._open:
                self._changed.set()
