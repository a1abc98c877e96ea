"""Cleanup that outlives a cancelled call: cancelling the job it may have created.

A cancelled call returns at once and starts no request itself; what still has
to happen on the server runs here, as a task on the client's own event loop,
bounded by `CLEANUP_TIMEOUT`, and `AsyncJobClient.aclose()` waits for it. A
cleanup that fails says what is left: `resume()` advice only when there is a
journal to resume from.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import anyio

from ._errors import ConnectionFailedError

__all__ = ["CLEANUP_TIMEOUT", "Cleanups", "never_sent"]

logger = logging.getLogger("asyncjob")

CLEANUP_TIMEOUT = 10.0
"""Seconds one cleanup may take (its requests and their retries included)."""


class Cleanups:
    """The cleanup tasks of one client, each bounded in time."""

    def __init__(self, *, journaled: bool) -> None:
        self._journaled = journaled
        self._tasks: dict[asyncio.Task[None], str | None] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def start(
        self, func: Callable[[], Awaitable[None]], what: str, key: str | None = None
    ) -> asyncio.Task[None]:
        """Run `func()` in the background on the running loop; `what` names it in logs.

        `key` (a submission's) lets `join` find it.
        """
        if self._journaled and key is not None:
            left = "resume() can finish it from the journal"
        else:
            left = "a job may be left on the server (no journal to resume it from)"
        task = asyncio.get_running_loop().create_task(
            _bounded(func, what, left), name="asyncjob-cleanup"
        )
        self._tasks[task] = key
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def join(self, key: str) -> None:
        """Wait for the cleanups of submission `key` (a cancellation ends the wait only)."""
        mine = [task for task, of in self._tasks.items() if of == key]
        if mine:
            await asyncio.wait(mine)

    async def wait(self) -> None:
        """Wait for the cleanups running on this loop (each ends within its own bound)."""
        loop = asyncio.get_running_loop()
        mine = [task for task in self._tasks if task.get_loop() is loop]
        if not mine:
            return
        _, late = await asyncio.wait(mine, timeout=CLEANUP_TIMEOUT + 1)
        for task in late:  # not expected: each task bounds itself
            task.cancel()


def never_sent(exc: BaseException) -> bool:
    """True when a failed request certainly never reached the server (no connection made)."""
    return isinstance(exc, ConnectionFailedError) and not exc.request_sent


async def _bounded(func: Callable[[], Awaitable[None]], what: str, left: str) -> None:
    """`func()` within `CLEANUP_TIMEOUT`; a failure is logged with `left` (what remains)."""
    with anyio.move_on_after(CLEANUP_TIMEOUT) as scope:
        try:
            await func()
        except Exception as exc:
            logger.warning("%s failed (%s); %s", what, exc, left)
            return
    if scope.cancelled_caught:
        logger.warning("%s timed out after %.0f s; %s", what, CLEANUP_TIMEOUT, left)
