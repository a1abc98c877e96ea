"""Turns on the event loop: a few tasks at a time, each step in a later turn of the loop.

Thousands of tasks that each do a little CPU work, started or woken in the same
turn of the loop, would otherwise do all of it in that one turn, and every
other task on the loop (a caller's too) waits for the sum.
"""

from __future__ import annotations

import asyncio
import collections

__all__ = ["OneStepPerTurn", "Slots", "Turns"]


class Turns:
    """An async context admitting `n` tasks at a time, each in a later turn of the loop.

    Waiting in it costs little (a future in `Slots`: thousands of tasks
    started together queue up in one turn at the cost of as many no-op steps),
    and the turn taken after admission spreads the admitted work over the
    loop's turns even when nobody waits.
    """

    def __init__(self, n: int) -> None:
        self._slots = Slots(n)

    async def __aenter__(self) -> None:
        await _take(self._slots)
        await _next_turn_holding(self._slots)

    async def __aexit__(self, *exc_info: object) -> None:
        self._slots.release()


class OneStepPerTurn:
    """An async context for short synchronous steps: at most one of them in any turn of the loop.

    A step starts at once when none ran in this turn; otherwise it waits for a
    later turn, behind the steps already waiting (first come, first served).
    Thousands of tasks woken in the same turn then take a turn each, and a lone
    task pays no extra turn. The body must not await: a step is one turn.
    """

    def __init__(self) -> None:
        self._slots = Slots(1)
        self._loop = asyncio.get_running_loop()
        self._stepped = False
        """A step ran in this turn. Cleared by a callback queued with that step, so a task
        queued before it (it runs first in the next turn) may wait one turn more than needed."""

    async def __aenter__(self) -> None:
        handed = await _take(self._slots)
        if not handed and self._stepped:
            await _next_turn_holding(self._slots)
        # Handed over or after a turn: the callback queued with the last step ran first.
        self._stepped = True
        self._loop.call_soon(self._new_turn)

    def _new_turn(self) -> None:
        self._stepped = False

    async def __aexit__(self, *exc_info: object) -> None:
        self._slots.release()


async def _take(slots: Slots) -> bool:
    """A slot of `slots`, waited for if none is free; True if a release handed it over."""
    turn = slots.take()
    if turn is None:
        return False
    try:
        await turn
    except BaseException:
        slots.leave(turn)
        raise
    return True


async def _next_turn_holding(slots: Slots) -> None:
    """Wait for the next turn of the loop, holding a slot (given back if cancelled)."""
    try:
        await asyncio.sleep(0)
    except BaseException:
        slots.release()
        raise


class Slots:
    """A first-come, first-served semaphore whose waiters hold one future each, nothing more.

    The caller awaits the future `take()` gives it, and calls `leave()` if that
    await is cancelled. `release()` hands the slot straight to the first waiter
    still waiting. Where thousands wait (`Submitter.submit_batch`) the caller
    awaits the future itself: an `acquire()` coroutine (`_take`, which `Turns`
    and `OneStepPerTurn` use) would be one more object alive per waiter.
    """

    def __init__(self, n: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._free = n
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take(self) -> asyncio.Future[None] | None:
        """A slot: None if one was free, else a future to await, done once it is handed one."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return None
        turn = self._loop.create_future()
        self._waiters.append(turn)
        return turn

    def leave(self, turn: asyncio.Future[None]) -> None:
        """The waiter of `turn` stops waiting (cancelled): a slot handed to it passes on."""
        if turn.cancel():  # still waiting: `release()` skips it
            return
        if not turn.cancelled():
            self.release()

    def release(self) -> None:
        """Give the slot back: to the first waiter still waiting, if any."""
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():  # a cancelled waiter's future is done
                turn.set_result(None)
                return
        self._free += 1
