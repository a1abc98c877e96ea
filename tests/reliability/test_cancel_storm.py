"""Cancel storms: 200 submissions cancelled at random moments, nothing left behind.

Each submission is cancelled at a moment drawn at random from: before it starts,
while `job/init/` is in flight, while chunk k is in flight, right after chunk k was
applied (between chunks), during poll k, and during results page k. The moment is
a condition on what the scheduler has seen, not a sleep: the cancel fires when the
scheduler has received the k-th request of that kind (still in flight: every
request gets a little latency) or applied the chunk. The cancel comes from an anyio
cancel scope, a `threading.Event`, or through `JobBackend`.

Afterwards the scheduler holds no job that is neither finalized-and-finished nor
cancelled, no job twice, the same client (or backend) still runs a job to
completion, and no task or thread is left behind.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from asyncjob import (
    AsyncJobClient,
    ExecutionCancelledError,
    ExecutionResult,
    JobBackend,
    JobStatus,
    Limits,
    PollingPolicy,
)
from asyncjob.local import FaultConfig, LocalScheduler, ThreadedScheduler
from asyncjob.local._jobs import TERMINAL

from .conftest import TOKEN, load_soak, run_async, settle_threads

pytestmark = pytest.mark.slow

PHASES = ("before", "init", "chunk", "between", "poll", "results")
CIRCUITS = 12
"""Circuits per submission: with the small payload cap, 3 to 4 chunks; 3 result pages."""
PAGE = 4


def client_options() -> dict[str, Any]:
    return {
        "polling": PollingPolicy(interval=0.005),
        "limits": Limits(max_payload_bytes=1000, results_page_size=PAGE, upload_concurrency=2),
        "timeout": 10.0,
    }


LATENCY = FaultConfig(latency=(0.0, 0.004), seed=3)
"""A little latency keeps every request in flight for a moment, so a cancel that fires
when the scheduler sees a request lands while the client still waits for it."""
SLOW_RESULTS = FaultConfig(latency=0.1, only=("results",))
"""For a cancel during results: the pages of a small job come back faster than
`JobBackend` looks at its event (every 20 ms; 100 ms is the promise), so they are held."""


def new_scheduler() -> LocalScheduler:
    return LocalScheduler(
        token=TOKEN, job_duration=0.03, max_concurrent_jobs=8, faults=LATENCY, executor="sampler"
    )


def circuits_for(number: int) -> dict[str, str]:
    return load_soak().batch(number, CIRCUITS)


@dataclass
class Moment:
    """When to cancel: a predicate on the scheduler's state (None: before starting)."""

    phase: str
    predicate: Callable[[], bool] | None


def pick_moment(rng: random.Random, scheduler: LocalScheduler) -> Moment:
    phase = rng.choice(PHASES)
    scheduler.faults = SLOW_RESULTS if phase == "results" else LATENCY
    if phase == "before":
        return Moment(phase, None)
    base = dict(scheduler.stats.requests_by_endpoint)
    jobs_before = len(scheduler.jobs())

    def seen(endpoint: str) -> int:
        return scheduler.stats.requests_by_endpoint.get(endpoint, 0) - base.get(endpoint, 0)

    if phase == "init":
        return Moment(phase, lambda: seen("init") >= 1)
    if phase == "chunk":
        k = rng.randint(1, 3)
        return Moment(f"chunk {k}", lambda: seen("add_circuits") >= k)
    if phase == "between":
        applied = rng.randint(1, CIRCUITS - 1)

        def between() -> bool:
            jobs = scheduler.jobs()
            return len(jobs) > jobs_before and len(jobs[-1].labels) >= applied

        return Moment(phase, between)
    k = rng.randint(1, 3)
    if phase == "poll":
        return Moment(f"{phase} {k}", lambda: seen("status") + seen("watch") >= k)
    return Moment(f"{phase} {k}", lambda: seen("results") >= k)


@dataclass
class Tally:
    """What the storm did: outcomes by phase, and the labels of each submission."""

    outcomes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    submitted: int = 0

    def add(self, moment: Moment, outcome: str) -> None:
        self.submitted += 1
        self.outcomes[(moment.phase.split()[0], outcome)] += 1

    def cancelled_in(self, phase: str) -> int:
        return self.outcomes[(phase, "cancelled")]


def check_results(result: ExecutionResult, circuits: dict[str, str]) -> None:
    assert [r["label"] for r in result.results or []] == list(circuits)
    assert all(sum(r["results"].values()) == 100 for r in result.results or [])


async def check_scheduler_after_storm(scheduler: LocalScheduler, tally: Tally) -> None:
    """No orphan, no duplicate, and every finalized job finishes."""
    records = scheduler.jobs()
    orphans = [r for r in records if not r.finalized and r.status != "CANCELLED"]
    assert orphans == [], f"{len(orphans)} un-finalized, un-cancelled jobs left behind"
    # Exactly one job per submission that got as far as sending job/init/ (a cancel
    # during init has the background cleanup re-send it with the same Idempotency-Key
    # to find and cancel the job).
    assert len(records) == tally.submitted - tally.cancelled_in("before")
    assert all(len(set(r.labels)) == len(r.labels) for r in records)
    with anyio.fail_after(30):
        await scheduler.wait_until(
            lambda: all(r.status in TERMINAL for r in scheduler.jobs() if r.finalized)
        )


def assert_every_phase_was_hit(tally: Tally, phases: tuple[str, ...] = PHASES) -> None:
    missing = [phase for phase in phases if tally.cancelled_in(phase) == 0]
    assert missing == [], f"no submission was cancelled during {missing}: {tally.outcomes}"


# -- the async core: anyio cancel scopes and threading.Event -----------------------------
#
# The scheduler runs on a thread of its own, so the client's event loop holds only the
# client's tasks, and every cancel arrives from another thread, at any point.


def fire_when(
    threaded: ThreadedScheduler,
    loop: asyncio.AbstractEventLoop,
    predicate: Callable[[], bool],
    action: Callable[[], None],
) -> concurrent.futures.Future[None]:
    """Call `action()` on the scheduler's loop thread once `predicate` holds there."""

    async def wait() -> None:
        await threaded.scheduler.wait_until(predicate)
        action()

    return asyncio.run_coroutine_threadsafe(wait(), loop)


def quiesce(threaded: ThreadedScheduler) -> None:
    """Restart the scheduler (same port, jobs kept) between two submissions.

    A cancelled submission may leave a request written to a socket but not yet read by
    the scheduler; counted later, it would fire the next submission's trigger early.
    `stop()` drops such connections, so each submission's counts are its own. (The
    client meets server-closed pooled connections on its next requests: more chaos.)
    """
    threaded.restart()


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def storm_async(threaded: ThreadedScheduler, mode: str, count: int, seed: int) -> Tally:
    """`count` submissions through one client, cancelled by `mode` ("scope" or "event")."""
    rng = random.Random(seed)
    tally = Tally()
    server_loop = threaded.call(running_loop)
    tasks_before = len(asyncio.all_tasks())
    async with AsyncJobClient(threaded.base_url, TOKEN, **client_options()) as client:
        for number in range(count):
            await one_async(client, threaded, server_loop, rng, mode, number, tally)
            # A cancelled call returned at once; its job is cancelled in the background.
            await client._ctx.cleanups.wait()
            await anyio.to_thread.run_sync(quiesce, threaded)
        # Every cleanup is over: no task is left but those there before the storm.
        assert len(asyncio.all_tasks()) == tasks_before
        scheduler = threaded.scheduler
        await anyio.to_thread.run_sync(
            threaded.call, lambda: check_scheduler_after_storm(scheduler, tally)
        )
        # The client's session is still usable.
        circuits = circuits_for(10_000)
        with anyio.fail_after(30):
            check_results(await client.run(circuits, shots=100), circuits)
    assert len(asyncio.all_tasks()) == tasks_before
    return tally


async def one_async(
    client: AsyncJobClient,
    threaded: ThreadedScheduler,
    server_loop: asyncio.AbstractEventLoop,
    rng: random.Random,
    mode: str,
    number: int,
    tally: Tally,
) -> None:
    scheduler = threaded.scheduler
    moment = pick_moment(rng, scheduler)
    circuits = circuits_for(number)
    whole_run = rng.random() < 0.5  # client.run, or submit / poll / results one by one
    event = threading.Event()
    scope = anyio.CancelScope()
    client_loop = asyncio.get_running_loop()
    requests_before = scheduler.stats.requests_total

    def cancel() -> None:  # runs on the scheduler's thread
        if mode == "scope":
            client_loop.call_soon_threadsafe(scope.cancel)
        else:
            event.set()

    watcher = None
    if moment.predicate is None:
        scope.cancel() if mode == "scope" else event.set()
    else:
        watcher = fire_when(threaded, server_loop, moment.predicate, cancel)
    outcome = "completed"
    with anyio.fail_after(30):
        with scope:
            try:
                result = await flow_async(client, circuits, event, whole_run)
            except ExecutionCancelledError:
                outcome = "cancelled"
            else:
                check_results(result, circuits)
        if scope.cancelled_caught:
            outcome = "cancelled"
    if watcher is not None:
        watcher.cancel()
    if moment.phase == "before":
        assert outcome == "cancelled"
        assert scheduler.stats.requests_total == requests_before  # nothing was sent
    tally.add(moment, outcome)


async def flow_async(
    client: AsyncJobClient, circuits: dict[str, str], event: threading.Event, whole_run: bool
) -> ExecutionResult:
    if whole_run:
        return await client.run(circuits, shots=100, cancellation_event=event)
    handle = await client.submit_circuits(circuits, shots=100, cancellation_event=event)
    status = await client.poll_job_status(
        handle, loop_until_complete=True, verbose=False, cancellation_event=event
    )
    assert status is JobStatus.COMPLETED
    if event.is_set():  # get_job_results takes no event: the caller stops here
        raise ExecutionCancelledError("cancelled before fetching results")
    return await client.get_job_results(handle)


@pytest.mark.parametrize(("mode", "count", "seed"), [("scope", 70, 11), ("event", 70, 12)])
def test_cancel_storm_async_client(mode: str, count: int, seed: int) -> None:
    threads_before = set(threading.enumerate())
    with new_scheduler().run_in_thread() as threaded:
        tally = run_async(storm_async, threaded, mode, count, seed)
    assert tally.submitted == count
    assert_every_phase_was_hit(tally)
    # The loop is closed: its worker threads (journal, validation) ended with it.
    assert settle_threads(threads_before) == []


# -- the blocking facade: JobBackend with threading.Event --------------------------------


def flow_blocking(
    backend: JobBackend, circuits: dict[str, str], event: threading.Event, whole_run: bool
) -> ExecutionResult:
    if whole_run:
        return backend.run(circuits, shots=100, cancellation_event=event)
    handle = backend.submit_circuits(circuits, shots=100, cancellation_event=event)
    status = backend.poll_job_status(
        handle, loop_until_complete=True, verbose=False, cancellation_event=event
    )
    assert status is JobStatus.COMPLETED
    if event.is_set():
        raise ExecutionCancelledError("cancelled before fetching results")
    return backend.get_job_results(handle)


def settle(backend: JobBackend) -> None:
    """Wait for the background cleanups of the backend's cancelled calls."""
    loop = backend._running()
    loop.portal.call(loop.client._ctx.cleanups.wait)


def test_cancel_storm_job_backend() -> None:
    count, rng = 60, random.Random(13)
    tally = Tally()
    threads_before = set(threading.enumerate())
    with new_scheduler().run_in_thread() as threaded:
        loop = threaded.call(running_loop)
        scheduler = threaded.scheduler
        with JobBackend(threaded.base_url, TOKEN, **client_options()) as backend:
            for number in range(count):
                moment = pick_moment(rng, scheduler)
                circuits = circuits_for(number)
                event = threading.Event()
                watcher = None
                if moment.predicate is None:
                    event.set()
                else:
                    watcher = fire_when(threaded, loop, moment.predicate, event.set)
                outcome = "completed"
                try:
                    result = flow_blocking(backend, circuits, event, rng.random() < 0.5)
                except ExecutionCancelledError:
                    outcome = "cancelled"
                else:
                    check_results(result, circuits)
                if watcher is not None:
                    watcher.cancel()
                    concurrent.futures.wait([watcher], timeout=30)
                tally.add(moment, outcome)
                settle(backend)
                quiesce(threaded)

            threaded.call(lambda: check_scheduler_after_storm(scheduler, tally))
            # The same backend still runs a job to completion.
            circuits = circuits_for(10_000)
            check_results(backend.run(circuits, shots=100), circuits)
        # close() stopped the backend's loop thread.
        assert not [t for t in threading.enumerate() if t.name == "asyncjob-loop"]
    assert tally.submitted == count
    assert_every_phase_was_hit(tally)
    assert settle_threads(threads_before) == []
