"""Jobs that `as_completed` polls wait in a heap, polled by a few workers, not a task each.

A task per polled job held some forty objects while it waited: following 5,000
jobs by polling, the garbage collector's full passes over them stalled the event
loop for over 100 ms.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import warnings
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
    _status,
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

    settled: list[tuple[str, object]] = []
    fast_done = anyio.Event()

    def settle(handle: ExecutionResult, outcome: JobStatus | Exception) -> None:
        settled.append((str(handle.job_id), outcome))
        fast_done.set()

    hour = PollingPolicy(interval=3600.0, max_interval=3600.0, watch=False)
    async with polling_client(MockTransport(handler), hour) as client:
        pollers = JobPollers(client._status)
        source = pollers.source()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pollers.run, 1, [], settle)
                with source:
                    pollers.add(ExecutionResult(job_id="slow"))
                    await first_poll.wait()  # its next poll is an hour away
                    pollers.add(ExecutionResult(job_id="fast"))
                    await fast_done.wait()
                tg.cancel_scope.cancel()  # "slow" would be polled again in an hour
    assert settled == [("fast", JobStatus.COMPLETED)]
    assert len(polls["slow"]) == 1 and len(polls["fast"]) == 1


async def test_run_ends_when_every_job_is_settled_and_no_source_is_open() -> None:
    polls: dict[str, list[float]] = defaultdict(list)
    settled: dict[str, object] = {}

    def settle(handle: ExecutionResult, outcome: JobStatus | Exception) -> None:
        settled[str(handle.job_id)] = outcome

    async with polling_client(
        server(1, polls), PollingPolicy(interval=0.01, max_retries=1, watch=False)
    ) as client:
        pollers = JobPollers(client._status)
        source = pollers.source()

        async def add_two() -> None:
            with source:
                pollers.add(ExecutionResult(job_id="j1"))
                await anyio.lowlevel.checkpoint()
                pollers.add(ExecutionResult(job_id="j2"))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(add_two)
                await pollers.run(2, [ExecutionResult(job_id="j0")], settle)  # ends by itself
    assert sorted(settled) == ["j0", "j1", "j2"]  # each RUNNING at its one poll
    assert all(isinstance(o, MaxRetriesReachedError) for o in settled.values())


async def test_a_deadline_ends_the_polling_of_a_job_that_never_finishes() -> None:
    polls: dict[str, list[float]] = defaultdict(list)
    settled: list[object] = []
    policy = PollingPolicy(interval=0.01, deadline=0.2, watch=False)
    async with polling_client(server(10**6, polls), policy) as client:
        pollers = JobPollers(client._status)
        with anyio.fail_after(10):
            await pollers.run(2, [ExecutionResult(job_id="j0")], lambda h, o: settled.append(o))
    assert len(settled) == 1 and isinstance(settled[0], MaxRetriesReachedError)
    assert 2 <= len(polls["j0"]) <= 25  # polled an interval apart until the deadline


@pytest.mark.parametrize("workers", [1, 3])
async def test_every_job_is_settled_whatever_the_number_of_workers(workers: int) -> None:
    polls: dict[str, list[float]] = defaultdict(list)
    settled: dict[str, object] = {}

    def settle(handle: ExecutionResult, outcome: JobStatus | Exception) -> None:
        settled[str(handle.job_id)] = outcome

    async with polling_client(
        server(2, polls), PollingPolicy(interval=0.001, watch=False)
    ) as client:
        pollers = JobPollers(client._status)
        handles = [ExecutionResult(job_id=f"j{i}") for i in range(20)]
        with anyio.fail_after(10):
            await pollers.run(workers, handles, settle)
    assert settled == {f"j{i}": JobStatus.COMPLETED for i in range(20)}


async def test_leaving_as_completed_at_once_with_a_bad_handle_raises_nothing() -> None:
    """The pollers, cancelled before they began, settle nothing into a closed stream."""
    polls: dict[str, list[float]] = defaultdict(list)
    async with polling_client(server(0, polls), PollingPolicy(watch=False)) as client:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for n_jobs in (1, 1200):  # 1,200: cancelled between two batches of jobs added
                handles = [
                    ExecutionResult(),
                    *(ExecutionResult(job_id=f"j{i}") for i in range(n_jobs)),
                ]
                async with client.as_completed(handles):
                    pass
                async with client.as_completed(handles) as outcomes:
                    first = await outcomes.receive()
                assert first.error is not None and first.handle is handles[0]
            gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def most_added_in_one_turn(
    monkeypatch: pytest.MonkeyPatch, transport: MockTransport, policy: PollingPolicy
) -> int:
    """Follow 100 jobs with `as_completed`: the most `JobPollers.add` calls in one loop turn."""
    counter = TurnCounter()
    added_at: list[int] = []
    add = JobPollers.add

    def counted(self: JobPollers, handle: ExecutionResult) -> None:
        added_at.append(counter.turns)
        add(self, handle)

    monkeypatch.setattr(JobPollers, "add", counted)
    async with polling_client(transport, policy) as client:
        handles = [ExecutionResult(job_id=f"j{i}") for i in range(100)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(counter.run)
            with anyio.fail_after(30):
                async with client.as_completed(handles, fetch_results=False) as outcomes:
                    got = [o async for o in outcomes]
            tg.cancel_scope.cancel()
    assert len(got) == len(added_at) == 100
    return max(Counter(added_at).values())


async def test_the_jobs_to_poll_are_added_a_few_hundred_per_turn_of_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Adding a job takes microseconds: thousands in one turn would stall the loop."""
    monkeypatch.setattr(_pollers, "_ADDED_PER_TURN", 10)
    polls: dict[str, list[float]] = defaultdict(list)
    policy = PollingPolicy(interval=0.01, watch=False)
    assert await most_added_in_one_turn(monkeypatch, server(0, polls), policy) <= 10


async def test_jobs_the_watch_hands_back_are_added_a_few_per_turn_of_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server without `jobs/watch/` hands every job back to be polled: not all in one turn."""
    monkeypatch.setattr(_status, "_NOTED_AT_ONCE", 10)
    polls: dict[str, list[float]] = defaultdict(list)
    status_only = answers(0, polls)

    def handler(request: Request) -> Response:
        return Response(404, text="{}") if "jobs/watch" in request.url else status_only(request)

    policy = PollingPolicy(interval=0.01)
    assert await most_added_in_one_turn(monkeypatch, MockTransport(handler), policy) <= 10
