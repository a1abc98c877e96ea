"""`OneStepPerTurn`: one step at most in any turn of the loop, no extra turn for a lone one."""

from __future__ import annotations

import asyncio

from asyncjob._turns import OneStepPerTurn

from .conftest import TurnCounter


async def test_a_lone_step_starts_at_once_and_a_second_in_the_same_turn_waits() -> None:
    steps = OneStepPerTurn()
    counter = TurnCounter()
    ticking = asyncio.create_task(counter.run())
    await asyncio.sleep(0)
    try:
        before = counter.turns
        async with steps:
            assert counter.turns == before  # no turn taken
        async with steps:
            assert counter.turns > before  # one ran in this turn: a later one
    finally:
        ticking.cancel()


async def test_steps_of_tasks_woken_together_run_one_per_turn() -> None:
    steps = OneStepPerTurn()
    counter = TurnCounter()
    ticking = asyncio.create_task(counter.run())
    ran_at: list[int] = []

    async def worker() -> None:
        for _ in range(3):
            async with steps:
                ran_at.append(counter.turns)

    try:
        await asyncio.gather(*(worker() for _ in range(20)))
    finally:
        ticking.cancel()
    assert len(ran_at) == 60
    assert len(set(ran_at)) == 60  # no two steps in one turn


def stepping(names: str) -> tuple[dict[str, asyncio.Task[None]], list[str]]:
    """A task per name, each taking one step of one `OneStepPerTurn`; the names, as they step."""
    steps = OneStepPerTurn()
    entered: list[str] = []

    async def step(name: str) -> None:
        async with steps:
            entered.append(name)

    return {name: asyncio.create_task(step(name)) for name in names}, entered


async def test_a_waiter_cancelled_in_the_queue_is_skipped() -> None:
    tasks, entered = stepping("abcd")
    await asyncio.sleep(0)  # a stepped; b holds the slot for the next turn; c, d queue
    tasks["c"].cancel()
    await asyncio.wait_for(tasks["d"], 5)
    assert entered == ["a", "b", "d"] and tasks["c"].cancelled()


async def test_a_step_that_raises_gives_its_slot_back() -> None:
    steps = OneStepPerTurn()
    try:
        async with steps:
            raise ValueError("in the step")
    except ValueError:
        pass
    await asyncio.sleep(0)
    async with steps:  # free again: this would wait for ever otherwise
        pass


async def test_a_task_cancelled_while_waiting_for_its_turn_passes_the_slot_on() -> None:
    # a steps at once (in the next turn); b, in the same turn, takes the slot and waits a
    # turn; c queues behind it.
    tasks, entered = stepping("abc")
    await asyncio.sleep(0)  # the three have started
    assert entered == ["a"] and tasks["a"].done()
    tasks["b"].cancel()
    await asyncio.wait_for(tasks["c"], 5)
    assert entered == ["a", "c"] and tasks["b"].cancelled()
