"""Server restarts (stop, then start on the same port) while the client is working.

The client retries refused connections within its retry budget and carries on: a
poll resumes, an upload completes without duplicating a chunk. Past the budget it
fails with a clear `ConnectionFailedError`, never a hang.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import anyio
import pytest

from asyncjob import (
    AsyncJobClient,
    ConnectionFailedError,
    JobBackend,
    JobStatus,
    Limits,
    PollingPolicy,
    RetryPolicy,
)
from asyncjob.local import LocalScheduler

from .conftest import TOKEN, assert_token_free, load_soak

ATTEMPTS = 8


def retry() -> RetryPolicy:
    # 0.05 + 0.1 + 0.2 + 0.4 * 4 = 1.95 s of backoff in all: the budget a restart must fit.
    return RetryPolicy(attempts=ATTEMPTS, initial=0.05, max_backoff=0.4, jitter=False)


class OnRecord(logging.Handler):
    """Calls `callback` for each record of the `asyncjob` logger whose message matches."""

    def __init__(self, fragment: str, callback: Callable[[], object]) -> None:
        super().__init__(logging.DEBUG)
        self.fragment = fragment
        self.callback = callback
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.fragment in record.getMessage():
            self.count += 1
            self.callback()


@pytest.fixture
def watch() -> Iterator[Callable[[str, Callable[[], object]], OnRecord]]:
    """Attach `OnRecord` handlers to the asyncjob logger (at DEBUG) for the test."""
    logger = logging.getLogger("asyncjob")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    handlers: list[OnRecord] = []

    def attach(fragment: str, callback: Callable[[], object]) -> OnRecord:
        handler = OnRecord(fragment, callback)
        logger.addHandler(handler)
        handlers.append(handler)
        return handler

    yield attach
    for handler in handlers:
        logger.removeHandler(handler)
    logger.setLevel(level)


REFUSED = "failed (ConnectionFailedError); retrying"


def check_results(result: object, circuits: dict[str, str]) -> None:
    results = getattr(result, "results", None) or []
    assert [r["label"] for r in results] == list(circuits)
    assert all(sum(r["results"].values()) == 100 for r in results)


async def test_poll_resumes_across_a_restart(watch: Callable[..., OnRecord]) -> None:
    circuits = load_soak().batch(1, 4)
    async with LocalScheduler(token=TOKEN, job_duration=0.3, executor="sampler") as scheduler:
        port = scheduler.port
        async with AsyncJobClient(
            scheduler.base_url, TOKEN, retry=retry(), polling=PollingPolicy(interval=0.02)
        ) as client:
            handle = await client.submit_circuits(circuits, shots=100)
            refused = anyio.Event()
            failures = watch(REFUSED, refused.set)
            polls = scheduler.stats.polls

            async def restart() -> None:
                await scheduler.wait_until(lambda: scheduler.stats.polls >= polls + 2)
                await scheduler.stop()  # mid-poll: the job is RUNNING
                await refused.wait()  # the client met the closed port and is retrying
                await scheduler.start()

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(restart)
                    status = await client.poll_job_status(handle, loop_until_complete=True)
            assert status is JobStatus.COMPLETED
            assert scheduler.port == port
            assert 1 <= failures.count < ATTEMPTS  # retried, within the budget
            check_results(await client.get_job_results(handle), circuits)
        assert len(scheduler.jobs()) == 1


def test_backend_poll_resumes_across_a_restart(watch: Callable[..., OnRecord]) -> None:
    circuits = load_soak().batch(2, 4)
    with LocalScheduler(
        token=TOKEN, job_duration=0.3, executor="sampler"
    ).run_in_thread() as threaded:
        scheduler = threaded.scheduler
        with JobBackend(
            threaded.base_url, TOKEN, retry=retry(), polling=PollingPolicy(interval=0.02)
        ) as backend:
            handle = backend.submit_circuits(circuits, shots=100)
            refused = threading.Event()
            failures = watch(REFUSED, refused.set)
            polls = scheduler.stats.polls
            problems: list[BaseException] = []

            def restart() -> None:
                try:

                    async def polled_twice() -> None:
                        with anyio.fail_after(30):
                            await scheduler.wait_until(lambda: scheduler.stats.polls >= polls + 2)

                    threaded.call(polled_twice)
                    threaded.call(scheduler.stop)
                    assert refused.wait(30)
                    threaded.call(scheduler.start)
                except BaseException as exc:  # reported by the test thread
                    problems.append(exc)

            restarter = threading.Thread(target=restart, name="restarter")
            restarter.start()
            status = backend.poll_job_status(handle, loop_until_complete=True, verbose=False)
            restarter.join(30)
            assert problems == []
            assert status is JobStatus.COMPLETED
            assert 1 <= failures.count < ATTEMPTS
            check_results(backend.get_job_results(handle), circuits)


async def test_server_down_past_the_retry_budget_is_a_clear_error(
    watch: Callable[..., OnRecord],
) -> None:
    async with LocalScheduler(token=TOKEN, job_duration=3600, executor="sampler") as scheduler:
        async with AsyncJobClient(
            scheduler.base_url, TOKEN, retry=retry(), polling=PollingPolicy(interval=0.02)
        ) as client:
            handle = await client.submit_circuits({"a": load_soak().circuit(0, 0)})
            await scheduler.stop()
            failures = watch(REFUSED, lambda: None)
            with anyio.fail_after(30), pytest.raises(ConnectionFailedError) as info:
                await client.poll_job_status(handle, loop_until_complete=True)
            assert failures.count == ATTEMPTS - 1  # every try was made, then it gave up
            assert "jobs/watch/" in str(info.value)  # the long poll that found no server
            assert_token_free(info.value)
            await scheduler.start()  # the same client carries on once the server is back
            await client.cancel_job(handle)
            assert (await client.get_status(handle))[1] is JobStatus.CANCELLED


async def test_upload_survives_a_restart_between_chunks_without_duplicates(
    watch: Callable[..., OnRecord],
) -> None:
    circuits = load_soak().batch(3, 30)
    async with LocalScheduler(token=TOKEN, executor="sampler") as scheduler:
        async with AsyncJobClient(
            scheduler.base_url,
            TOKEN,
            retry=retry(),
            polling=PollingPolicy(interval=0.02),
            limits=Limits(max_payload_bytes=1000, upload_concurrency=1),
        ) as client:
            refused = anyio.Event()
            failures = watch(REFUSED, refused.set)

            def some_chunks_applied() -> bool:
                jobs = scheduler.jobs()
                return bool(jobs) and len(jobs[0].labels) >= 8

            async def restart() -> None:
                await scheduler.wait_until(some_chunks_applied)
                await scheduler.stop()
                await refused.wait()
                await scheduler.start()

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(restart)
                    result = await client.run(circuits, shots=100)
            check_results(result, circuits)
            assert 1 <= failures.count < ATTEMPTS
        (job,) = scheduler.jobs()
        assert job.finalized and job.status == "COMPLETED"
        assert sorted(job.labels) == sorted(circuits)  # every label exactly once
        assert scheduler.stats.requests_by_endpoint["add_circuits"] >= 4
