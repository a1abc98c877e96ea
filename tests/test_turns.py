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


async def test_a_waiter_cancelled_in_the_queue_is_skipped() -> None:
    steps = OneStepPerTurn()
    entered: list[str] = []

    async def step(name: str) -> None:
        async with steps:
            entered.append(name)

    tasks = {name: asyncio.create_task(step(name)) for name in ("a", "b", "c", "d")}
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
    steps = OneStepPerTurn()
    entered: list[str] = []

    async def step(name: str) -> None:
        async with steps:
            entered.append(name)

    first = asyncio.create_task(step("first"))  # its step runs at once, in the next turn
    waiting = asyncio.create_task(step("waiting"))  # same turn: takes the slot, waits a turn
    queued = asyncio.create_task(step("queued"))  # behind it
    await asyncio.sleep(0)  # the three have started
    assert entered == ["first"] and first.done()
    waiting.cancel()
    await asyncio.wait_for(queued, 5)
    assert entered == ["first", "queued"] and waiting.cancelled()
