"""Thousands of submissions started together: a few are under way, the rest wait holding nothing.

`Submitter.submit_batch` admits `IN_FLIGHT_PER_CONNECTION` submissions per
pooled connection; the others wait for a turn (`Slots`) before their batch
is even looked at.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from typing import Any

import anyio
import pytest

import asyncjob._submit
from asyncjob import (
    AsyncJobClient,
    ExecutionCancelledError,
    Limits,
    MockTransport,
    PollingPolicy,
    Request,
    Response,
)
from asyncjob._submit import IN_FLIGHT_PER_CONNECTION
from asyncjob._turns import Slots

from .conftest import BASE, BELL, TOKEN, fast_retry


def client_of(transport: MockTransport, max_connections: int) -> AsyncJobClient:
    return AsyncJobClient(
        BASE,
        TOKEN,
        transport=transport,
        retry=fast_retry(),
        polling=PollingPolicy(interval=0.001, watch=False),
        limits=Limits(max_connections=max_connections),
        journal=False,
    )


class Scheduler:
    """Answers `job/init/` and `add_circuits/`, each a few turns of the loop later (latency)."""

    def __init__(self) -> None:
        self.ids = itertools.count()
        self.inits = 0
        self.circuits: dict[str, list[str]] = {}
        self.gate = anyio.Event()
        self.gate.set()

    async def __call__(self, request: Request) -> Response:
        await self.gate.wait()
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        if request.path.endswith("job/init/"):
            self.inits += 1
            job_id = f"j{next(self.ids)}"
            self.circuits[job_id] = []
            return Response(201, text=json.dumps({"job_id": job_id}))
        job_id = request.path.split("/")[-3]
        assert request.body is not None
        self.circuits[job_id] += list(json.loads(request.body)["circuits"])
        return Response(200, text="{}")


async def test_only_a_few_submissions_per_connection_are_under_way_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = returned = most = 0
    real_build = asyncjob._submit.build_submission

    def build(*args: Any) -> Any:
        nonlocal built, most
        built += 1
        most = max(most, built - returned)
        return real_build(*args)

    monkeypatch.setattr(asyncjob._submit, "build_submission", build)
    scheduler = Scheduler()
    handles = {}
    n = 10 * IN_FLIGHT_PER_CONNECTION
    async with client_of(MockTransport(scheduler), max_connections=1) as client:

        async def submit(i: int) -> None:
            nonlocal returned
            handles[i] = await client.submit_circuits({f"c{i}": BELL})
            returned += 1

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(submit, i)
    assert most == IN_FLIGHT_PER_CONNECTION
    assert scheduler.inits == n
    assert sorted(scheduler.circuits[h.job_id][0] for h in handles.values()) == sorted(
        f"c{i}" for i in range(n)
    )


async def test_a_submission_waiting_for_its_turn_ends_with_its_cancellation_event() -> None:
    scheduler = Scheduler()
    scheduler.gate = anyio.Event()  # every request waits until the test lets them through
    event = threading.Event()
    async with client_of(MockTransport(scheduler), max_connections=1) as client:
        outcome: list[BaseException] = []
        ended = anyio.Event()

        async def late() -> None:
            try:
                await client.submit_circuits({"late": BELL}, cancellation_event=event)
            except ExecutionCancelledError as exc:
                outcome.append(exc)
            ended.set()

        async with anyio.create_task_group() as tg:
            for i in range(IN_FLIGHT_PER_CONNECTION):
                tg.start_soon(client.submit_circuits, {f"c{i}": BELL})
            tg.start_soon(late)
            for _ in range(10):  # everybody in place: one request held, the rest waiting
                await anyio.lowlevel.checkpoint()
            event.set()
            with anyio.fail_after(5):  # a guard against a hang, not a measurement
                await ended.wait()
            scheduler.gate.set()
    assert len(outcome) == 1
    assert scheduler.inits == IN_FLIGHT_PER_CONNECTION
    assert "late" not in {c for cs in scheduler.circuits.values() for c in cs}


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on() -> None:
    slots = Slots(1)
    assert slots.take() is None  # the only slot, held
    got: list[str] = []

    async def waiter(name: str) -> None:
        turn = slots.take()
        assert turn is not None
        try:
            await turn
        except BaseException:
            slots.leave(turn)
            raise
        got.append(name)

    first = asyncio.ensure_future(waiter("first"))
    second = asyncio.ensure_future(waiter("second"))
    await asyncio.sleep(0)  # both wait
    slots.release()  # handed to the first waiter...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.sleep(0)  # the second waiter runs if it was handed the slot
    second.cancel()  # (if it was not, it would wait forever)
    await asyncio.gather(second, return_exceptions=True)
    assert first.cancelled()
    assert got == ["second"]


async def test_a_waiter_cancelled_while_waiting_takes_no_slot() -> None:
    slots = Slots(1)
    assert slots.take() is None
    cancelled = slots.take()
    waiting = slots.take()
    assert cancelled is not None and waiting is not None
    cancelled.cancel()
    slots.leave(cancelled)
    slots.release()
    assert waiting.done() and not waiting.cancelled()
    slots.release()
    assert slots.take() is None  # the slot came back


@pytest.fixture
def built_on(monkeypatch: pytest.MonkeyPatch) -> list[threading.Thread]:
    """The thread of every `build_submission` call (which still runs)."""
    threads: list[threading.Thread] = []
    real_build = asyncjob._submit.build_submission

    def build(*args: Any) -> Any:
        threads.append(threading.current_thread())
        return real_build(*args)

    monkeypatch.setattr(asyncjob._submit, "build_submission", build)
    return threads


@pytest.mark.parametrize("size", [1, asyncjob._submit.THREAD_THRESHOLD + 1])
async def test_a_large_batch_is_checked_off_the_event_loop(
    built_on: list[threading.Thread], size: int
) -> None:
    """Checking 50,000 labels takes tens of ms: a batch past the threshold is built in a thread."""
    scheduler = Scheduler()
    async with client_of(MockTransport(scheduler), max_connections=1) as client:
        handle = await client.submit_circuits({f"c{i}": BELL for i in range(size)})
    assert scheduler.circuits[handle.job_id] == [f"c{i}" for i in range(size)]
    assert len(built_on) == 1
    assert (built_on[0] is threading.current_thread()) == (size == 1)


async def test_a_batch_without_a_length_is_refused_on_the_loop(
    built_on: list[threading.Thread],
) -> None:
    async with client_of(MockTransport(Scheduler()), max_connections=1) as client:
        with pytest.raises(asyncjob.InvalidInputTypeError, match="mapping or a sequence"):
            await client.submit_circuits(iter([BELL]))  # type: ignore[arg-type]
    assert built_on == [threading.current_thread()]


async def test_an_invalid_large_batch_raises_its_error_from_the_worker_thread() -> None:
    scheduler = Scheduler()
    batch: dict[Any, str] = {f"c{i}": BELL for i in range(asyncjob._submit.THREAD_THRESHOLD)}
    batch[7] = BELL
    async with client_of(MockTransport(scheduler), max_connections=1) as client:
        with pytest.raises(asyncjob.InvalidInputTypeError, match="labels must be str, got int"):
            await client.submit_circuits(batch)
    assert scheduler.inits == 0


def test_a_parametric_batch_counts_its_parameter_sets() -> None:
    template = "OPENQASM 2.0;\nqreg q[1];\ncreg c[1];\nrx(t) q[0];\nmeasure q -> c;\n"
    circuit = asyncjob.ParametricCircuit(template, ("t",), [(f"r{i}", [0.1]) for i in range(40)])
    size = asyncjob._submit._size
    assert size(circuit) == 40
    assert size([circuit, ("plain", BELL)]) == 41
    assert size({f"c{i}": BELL for i in range(3)}) == 3
    assert size(iter([BELL])) == 0
