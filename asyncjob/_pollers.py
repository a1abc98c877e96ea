"""Polling many jobs with a few tasks: a heap of jobs ordered by the time of their next poll."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
from collections.abc import Callable, Iterator, Sequence

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream

from ._context import job_id_of
from ._errors import AsyncJobError
from ._models import ExecutionResult, JobStatus
from ._status import Polling, StatusFollower

__all__ = ["JobPollers", "Settle"]

_ADDED_PER_TURN = 500
"""Jobs `run` adds in one turn of the event loop (a few microseconds each)."""
_Due = tuple[float, int, ExecutionResult, Polling]
"""A job waiting for its next poll: when, the order it came in (ties), its handle and loop."""
Settle = Callable[[ExecutionResult, JobStatus | Exception], None]
"""Called once per job: its terminal status, or why polling it failed."""


class JobPollers:
    """Polls jobs until each is terminal, a few at a time, each at its time.

    A task per job would hold some forty objects while it waits (its chain of
    coroutines, the task group's state for it); with thousands of jobs the
    garbage collector's full passes over them stall the event loop for a
    hundred milliseconds and more. Here a waiting job is a heap entry and its
    `Polling`, and a fixed number of workers send the polls that are due, the
    earliest first; the workers only poll (what follows a terminal status is
    the caller's, in `settle`).
    """

    def __init__(self, follower: StatusFollower) -> None:
        self._follower = follower
        self._due: list[_Due] = []
        self._order = itertools.count()
        self._open = 0
        """Jobs added and not yet settled."""
        self._sources = 0
        """Tasks that may still add jobs (`source`)."""
        self._changed = anyio.Event()

    def add(self, handle: ExecutionResult) -> None:
        """Poll this job from now on, at once (its id must be valid: `job_id_of`)."""
        polling = self._follower.start_polling(job_id_of(handle))
        self._open += 1
        self._at(anyio.current_time(), handle, polling)

    def source(self) -> contextlib.AbstractContextManager[None]:
        """Count a task that may add jobs, from now until the returned context exits.

        `run` does not end while one is counted: take it before starting the
        task, and enter it first thing in the task.
        """
        self._sources += 1

        @contextlib.contextmanager
        def counted_until_exit() -> Iterator[None]:
            try:
                yield
            finally:
                self._sources -= 1
                self._changed.set()

        return counted_until_exit()

    async def run(self, workers: int, first: Sequence[ExecutionResult], settle: Settle) -> None:
        """Poll `first` and every job added, with `workers` tasks, until all are settled.

        `first` is added `_ADDED_PER_TURN` per turn of the event loop. `run`
        ends once every job is settled and no source is counted.
        """
        await anyio.lowlevel.checkpoint()  # cancelled before it began: nothing is settled
        ready_send, ready = anyio.create_memory_object_stream[_Due](math.inf)
        with ready_send, ready:
            async with anyio.create_task_group() as tg:
                for _ in range(workers):
                    tg.start_soon(self._work, ready, settle)
                for start in range(0, len(first), _ADDED_PER_TURN):
                    if start:
                        await anyio.lowlevel.checkpoint()
                    for handle in first[start : start + _ADDED_PER_TURN]:
                        self.add(handle)
                while self._open or self._sources:
                    now = anyio.current_time()
                    while self._due and self._due[0][0] <= now:
                        ready_send.send_nowait(heapq.heappop(self._due))
                    self._changed = anyio.Event()
                    with anyio.move_on_after(self._due[0][0] - now if self._due else math.inf):
                        await self._changed.wait()
                ready_send.close()  # the workers stop

    def _at(self, when: float, handle: ExecutionResult, polling: Polling) -> None:
        """Queue the job's next poll at `when` (wakes `run` if it is the earliest)."""
        heapq.heappush(self._due, (when, next(self._order), handle, polling))
        if self._due[0][3] is polling:
            self._changed.set()

    async def _work(self, ready: MemoryObjectReceiveStream[_Due], settle: Settle) -> None:
        """Send the polls that are due, one at a time; requeue each job not yet terminal."""
        async for _, _, handle, polling in ready:
            outcome: JobStatus | Exception
            try:
                _, outcome = await self._follower.poll_once(polling, hold=False)
                if not outcome.is_terminal:
                    self._at(self._follower.next_poll(polling, outcome), handle, polling)
                    continue
            except (AsyncJobError, ValueError) as exc:
                outcome = exc
            settle(handle, outcome)
            self._open -= 1
            if not self._open:
                self._changed.set()
