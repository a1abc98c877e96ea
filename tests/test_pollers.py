"""Jobs that `as_completed` polls wait in a heap, polled by a few workers, not a task each.

A task per polled job held some forty objects while it waited: following 5,000
jobs by polling, the garbage collector's full passes over them stalled the event
loop for over 100 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from asyncjob import (
    AsyncJobClient,
    ExecutionResult,
    JobStatus,
    Limits,
    MockTransport,
    PollingPolicy,
    Request,
    Response,
    _pollers,
)
from asyncjob._errors import MaxRetriesReachedError
from asyncjob._pollers import JobPollers

from .conftest import TurnCounter

BASE = "http://127.0.0.1:1/api/"


def job_of(request: Request) -> str:
    return request.url.split("/job/")[1].split("/")[0]


def server(polls_until_done: int, polls: dict[str, list[float]]) -> MockTransport:
    """Each job is RUNNING for its first polls, then COMPLETED with one result."""
    return MockTransport(answers(polls_until_done, polls))


def answers(polls_until_done: int, polls: dict[str, list[float]]) -> Callable[[Request], Response]:
    """`server`'s handler."""

    def handler(request: Request) -> Response:
        job_id = job_of(request)
        if request.url.endswith("/status/"):
            polls[job_id].append(anyio.current_time())
            done = len(polls[job_id]) > polls_until_done
            return Response(200, text=json.dumps({"status": "COMPLETED" if done else "RUNNING"}))
        page = {"results": [{"label": "c0", "results": {"0": 1}}], "count": 1}
        return Response(200, text=json.dumps(page))

    return handler


def polling_client(
    transport: MockTransport, polling: PollingPolicy, limits: Limits | None = None
) -> AsyncJobClient:
    """A client of `transport`, journal off."""
    return AsyncJobClient(
        BASE, "t", transport=transport, polling=polling, limits=limits or Limits(), journal=False
    )


async def test_thousands_of_polled_jobs_wait_without_a_task_each() -> None:
    polls: dict[str, list[float]] = defaultdict(list)
    most_tasks = 0

    async def count_tasks() -> None:
        nonlocal most_tasks
        while True:
            most_tasks = max(most_tasks, len(asyncio.all_tasks()))
            await anyio.lowlevel.checkpoint()

    async with polling_client(
        server(2, polls),
        PollingPolicy(interval=0.01, watch=False),
        limits=Limits(max_connections=4),
    ) as client:
        handles = [ExecutionResult(job_id=f"j{i}") for i in range(1000)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(count_tasks)
            with anyio.fail_after(60):
                async with client.as_completed(handles) as outcomes:
                    got = [o async for o in outcomes]
            tg.cancel_scope.cancel()
    assert sorted(o.handle.job_id for o in got) == sorted(h.job_id for h in handles)
    assert all(o.status is JobStatus.COMPLETED and o.result is not None for o in got)
    assert all(len(times) == 3 for times in polls.values())
    assert most_tasks <= 20  # 8 workers (two per connection), the dispatcher, this test's


async def test_each_job_is_polled_an_interval_apart() -> None:
    polls: dict[str, list[float]] = defaultdict(list)
    interval = 0.05
    async with polling_client(
        server(3, polls),
        PollingPolicy(interval=interval, watch=False),
        limits=Limits(max_connections=1),
    ) as client:
        handles = [ExecutionResult(job_id=f"j{i}") for i in range(5)]
        with anyio.fail_after(30):
            async with client.as_completed(handles, fetch_results=False) as outcomes:
                got = [o async for o in outcomes]
    assert [o.status for o in got] == [JobStatus.COMPLETED] * 5
    for times in polls.values():
        assert len(times) == 4
        assert all(b - a >= interval * 0.99 for a, b in itertools.pairwise(times))


async def test_a_job_added_while_the_others_wait_long_is_polled_at_once() -> None:
    """The workers do not sleep until the earliest poll they knew of when a job comes."""
    polls: dict[str, list[float]] = defaultdict(list)
    first_poll = anyio.Event()
    done_at_once = answers(0, polls)

    def handler(request: Request) -> Response:
        if job_of(request) == "slow":
            first_poll.set()
            polls["slow"].append(anyio.current_time())
            return Response(200, text=json.dumps({"status": "RUNNING"}))
        return done_at_once(request)

    finished: list[tuple[str, JobStatus]] = []
    fast_done = anyio.Event()
    async with polling_client(
        MockTransport(handler), PollingPolicy(interval=3600.0, watch=False)
    ) as client:

        async def finish(handle: ExecutionResult, status: JobStatus) -> None:
            finished.append((str(handle.job_id), status))
            fast_done.set()

        def fail(handle: ExecutionResult, exc: Exception) -> None:
            raise AssertionError(f"{handle.job_id} failed: {exc}")

        pollers = JobPollers(client._status, finish, fail)
        source = pollers.source()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pollers.run, 1)
                with source:
                    pollers.add(ExecutionResult(job_id="slow"))
                    await first_poll.wait()  # its next poll is an hour away
                    pollers.add(ExecutionResult(job_id="fast"))
                    await fast_done.wait()
                tg.cancel_scope.cancel()  # "slow" would be polled again in an hour
    assert finished == [("fast", JobStatus.COMPLETED)]
    assert len(polls["slow"]) == 1 and len(polls["fast"]) == 1


async def test_run_ends_when_every_job_is_settled_and_no_source_is_open() -> None:
    polls: dict[str, list[float]] = defaultdict(list)
    outcomes: list[object] = []
    async with polling_client(
        server(1, polls), PollingPolicy(interval=0.01, max_retries=1, watch=False)
    ) as client:

        async def finish(handle: ExecutionResult, status: JobStatus) -> None:
            outcomes.append(status)

        pollers = JobPollers(client._status, finish, lambda handle, exc: outcomes.append(exc))
        pollers.add(ExecutionResult(job_id=""))  # not a valid id: fails at once
        source = pollers.source()

        async def add_two() -> None:
            with source:
                pollers.add(ExecutionResult(job_id="j1"))
                await anyio.lowlevel.checkpoint()
                pollers.add(ExecutionResult(job_id="j2"))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(add_two)
                await pollers.run(2)  # returns by itself once the source is closed
    assert isinstance(outcomes[0], ValueError)
    assert sum(isinstance(o, MaxRetriesReachedError) for o in outcomes) == 2  # RUNNING, 1 poll
    assert len(outcomes) == 3


@pytest.mark.parametrize("workers", [1, 3])
async def test_every_job_is_settled_whatever_the_number_of_workers(workers: int) -> None:
    polls: dict[str, list[float]] = defaultdict(list)
    finished: list[str] = []
    async with polling_client(
        server(2, polls), PollingPolicy(interval=0.001, watch=False)
    ) as client:

        async def finish(handle: ExecutionResult, status: JobStatus) -> None:
            assert status is JobStatus.COMPLETED
            finished.append(str(handle.job_id))

        def fail(handle: ExecutionResult, exc: Exception) -> None:
            raise AssertionError(exc)

        pollers = JobPollers(client._status, finish, fail)
        for i in range(20):
            pollers.add(ExecutionResult(job_id=f"j{i}"))
        with anyio.fail_after(10):
            await pollers.run(workers)
    assert sorted(finished) == sorted(f"j{i}" for i in range(20))


async def test_the_jobs_to_poll_are_added_a_few_hundred_per_turn_of_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Adding a job takes microseconds: thousands in one turn would stall the loop."""
    monkeypatch.setattr(_pollers, "_ADDED_PER_TURN", 10)
    counter = TurnCounter()
    added_at: list[int] = []
    add = JobPollers.add

    def counted(self: JobPollers, handle: ExecutionResult) -> None:
        added_at.append(counter.turns)
        add(self, handle)

    monkeypatch.setattr(JobPollers, "add", counted)
    polls: dict[str, list[float]] = defaultdict(list)
    async with polling_client(
        server(0, polls), PollingPolicy(interval=0.01, watch=False)
    ) as client:
        handles = [ExecutionResult(job_id=f"j{i}") for i in range(100)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(counter.run)
            with anyio.fail_after(30):
                async with client.as_completed(handles, fetch_results=False) as outcomes:
                    got = [o async for o in outcomes]
            tg.cancel_scope.cancel()
    assert len(got) == len(added_at) == 100
    assert max(Counter(added_at).values()) <= 10
