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


async def test_a_waiter_cancelled_in_the_queue_passes_its_turn_on() -> None:
    steps = OneStepPerTurn()
    entered: list[str] = []

    async def step(name: str) -> None:
        async with steps:
            entered.append(name)

    async with steps:  # holds the slot: the others queue
        first = asyncio.create_task(step("first"))
        second = asyncio.create_task(step("second"))
        await asyncio.sleep(0)
        first.cancel()
    await asyncio.wait_for(second, 5)
    assert entered == ["second"] and first.cancelled()
