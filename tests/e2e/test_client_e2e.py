"""AsyncJobClient end to end against the real local scheduler on 127.0.0.1."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from asyncjob import (
    AsyncJobClient,
    AuthenticationError,
    ExecutionCancelledError,
    ExecutionResult,
    JobNotCompleteError,
    JobStatus,
    Limits,
    NotFoundError,
    PollingPolicy,
)
from asyncjob.local import LocalScheduler

from ..conftest import BELL, GHZ3, fast_retry

README = Path(__file__).parents[2] / "README.md"


@pytest.fixture
async def scheduler() -> AsyncIterator[LocalScheduler]:
    async with LocalScheduler(executor="sampler", job_duration=0.05, seed=1) as s:
        yield s


@pytest.fixture
async def client(scheduler: LocalScheduler) -> AsyncIterator[AsyncJobClient]:
    async with AsyncJobClient(
        scheduler.base_url,
        scheduler.token,
        polling=PollingPolicy(interval=0.02),
        retry=fast_retry(),
    ) as c:
        yield c


async def test_submit_poll_fetch(client: AsyncJobClient, scheduler: LocalScheduler) -> None:
    handle = await client.submit_circuits({"bell": BELL, "ghz": GHZ3}, shots=500)
    seen: list[str] = []
    status = await client.poll_job_status(
        handle, loop_until_complete=True, progress_callback=lambda n, s: seen.append(s)
    )
    assert status is JobStatus.COMPLETED
    result = await client.get_job_results(handle)
    assert result.job_id == handle.job_id
    assert [r["label"] for r in result.results or []] == ["bell", "ghz"]
    bell, ghz = (r["results"] for r in result.results or [])
    assert sum(bell.values()) == 500
    assert sum(ghz.values()) == 500
    assert all(len(k) == 2 for k in bell)
    assert all(len(k) == 3 for k in ghz)
    assert scheduler.stats.jobs_finalized == 1


async def test_many_chunks_and_pages(scheduler: LocalScheduler) -> None:
    circuits = {f"c{i:04d}": BELL + f"// {os.urandom(200).hex()}\n" for i in range(450)}
    async with AsyncJobClient(
        scheduler.base_url,
        scheduler.token,
        polling_interval=0.02,
        limits=Limits(max_payload_bytes=20_000, results_page_size=50),
    ) as client:
        result = await client.run(circuits, shot_groups=[[0, 200, 10], [200, 450, 20]])
    assert [r["label"] for r in result.results or []] == list(circuits)
    shots = [sum(r["results"].values()) for r in result.results or []]
    assert shots == [10] * 200 + [20] * 250
    (job,) = scheduler.jobs()
    assert job.finalized
    assert scheduler.stats.requests_by_endpoint["add_circuits"] > 5
    assert scheduler.stats.requests_by_endpoint["results"] == 9


async def test_expectation_job(client: AsyncJobClient) -> None:
    result = await client.run(
        {"a": BELL, "b": BELL, "c": BELL}, ham_ops="ZZ;XX|ZI", circuit_ham_map=[[0, 2], [2, 3]]
    )
    assert [r["label"] for r in result.results or []] == ["a", "b", "c"]
    assert all(r["results"] for r in result.results or [])


async def test_cancel_and_results_before_completion(scheduler: LocalScheduler) -> None:
    async with LocalScheduler(executor="sampler", job_duration=30) as slow:
        async with AsyncJobClient(slow.base_url, slow.token) as client:
            handle = await client.submit_circuits({"a": BELL})
            with pytest.raises(JobNotCompleteError, match="not complete"):
                await client.get_job_results(handle)
            first = await client.cancel_job(handle)
            second = await client.cancel_job(handle)
            assert first.status_code == 200
            assert second.status_code == 409
            assert await client.poll_job_status(handle) is JobStatus.CANCELLED


async def test_event_cancels_a_hanging_status_request(scheduler: LocalScheduler) -> None:
    from asyncjob.local import FaultConfig

    async with LocalScheduler(
        executor="sampler",
        job_duration=30,
        faults=FaultConfig(hang_rate=1.0, only=("status", "watch")),
    ) as hanging:
        async with AsyncJobClient(hanging.base_url, hanging.token, timeout=60) as client:
            handle = await client.submit_circuits({"a": BELL})
            event = threading.Event()
            threading.Timer(0.2, event.set).start()
            with anyio.fail_after(5), pytest.raises(ExecutionCancelledError):
                await client.poll_job_status(
                    handle, loop_until_complete=True, cancellation_event=event
                )
            assert hanging.stats.faults_injected.get("hang", 0) >= 1
            # only the wait was cancelled, not the job
            assert hanging.jobs()[0].status != "CANCELLED"


async def test_wrong_token_and_unknown_job(scheduler: LocalScheduler) -> None:
    async with AsyncJobClient(scheduler.base_url, "wrong-token") as client:
        with pytest.raises(AuthenticationError) as info:
            await client.poll_job_status("x")
        assert "wrong-token" not in str(info.value)
    async with AsyncJobClient(scheduler.base_url, scheduler.token) as client:
        with pytest.raises(NotFoundError):
            await client.poll_job_status(ExecutionResult(job_id="no-such-job"))
        with pytest.raises(NotFoundError):
            await client.poll_job_status("../../qpusystem")


async def test_as_completed_against_the_scheduler(scheduler: LocalScheduler) -> None:
    async with AsyncJobClient(scheduler.base_url, scheduler.token, polling_interval=0.02) as c:
        handles = [await c.submit_circuits({f"j{i}": BELL}) for i in range(5)]
        async with c.as_completed(handles) as outcomes:
            done = [o async for o in outcomes]
    assert sorted(o.handle.job_id or "" for o in done) == sorted(h.job_id or "" for h in handles)
    assert all(o.status is JobStatus.COMPLETED and o.result is not None for o in done)


async def test_as_completed_watches_many_jobs_with_few_requests() -> None:
    async with (
        LocalScheduler(
            job_duration=(0.05, 0.5), max_concurrent_jobs=20, seed=2, executor="sampler"
        ) as scheduler,
        AsyncJobClient(scheduler.base_url, scheduler.token, polling_interval=30.0) as client,
    ):
        handles = [await client.submit_circuits({f"j{i}": BELL}) for i in range(20)]
        with anyio.fail_after(20):  # one 30 s interval would trip this: finishes end rounds
            async with client.as_completed(handles) as outcomes:
                done = [o async for o in outcomes]
        by_endpoint = dict(scheduler.stats.requests_by_endpoint)
        fetched = await client.get_job_results(done[0].handle)
    assert all(o.status is JobStatus.COMPLETED and o.result is not None for o in done)
    assert done[0].result is not None and done[0].result.results == fetched.results
    assert len(done) == 20
    assert "status" not in by_endpoint
    assert "results" not in by_endpoint  # each came with the watch answer (`inline_results`)
    assert 1 <= by_endpoint["watch"] <= 20  # one round per finish at most, never per job


async def test_as_completed_against_a_server_without_watch() -> None:
    async with (
        LocalScheduler(job_duration=0.05, watch=False, executor="sampler") as scheduler,
        AsyncJobClient(scheduler.base_url, scheduler.token, polling_interval=0.02) as client,
    ):
        handles = [await client.submit_circuits({f"j{i}": BELL}) for i in range(3)]
        async with client.as_completed(handles) as outcomes:
            done = [o async for o in outcomes]
        by_endpoint = scheduler.stats.requests_by_endpoint
    assert all(o.status is JobStatus.COMPLETED and o.result is not None for o in done)
    assert by_endpoint["other"] == 1  # the one jobs/watch/ that found no route
    assert by_endpoint["status"] >= 3
    assert by_endpoint["results"] == 3


async def test_a_long_poll_outlasts_the_request_timeout() -> None:
    async with (
        LocalScheduler(job_duration=0.6, executor="sampler") as scheduler,
        AsyncJobClient(
            scheduler.base_url, scheduler.token, polling_interval=5.0, timeout=0.3
        ) as client,
    ):
        handle = await client.submit_circuits({"a": BELL})
        with anyio.fail_after(4):
            status = await client.poll_job_status(handle, loop_until_complete=True)
        assert status is JobStatus.COMPLETED
        assert scheduler.stats.polls == 1  # held 0.6 s, past the 0.3 s request timeout


async def test_readme_async_example_runs_as_printed(scheduler: LocalScheduler) -> None:
    text = README.read_text()
    block = re.search(r"## Async\n\n```python\n(.*?)```", text, re.S)
    assert block is not None
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    await namespace["main"](scheduler.base_url, scheduler.token)  # type: ignore[operator]


def test_readme_divi_example_runs_as_printed() -> None:
    pytest.importorskip("divi")
    pytest.importorskip("qiskit_aer")
    text = README.read_text()
    block = re.search(r"## Compatibility with qoro-divi\n\n.*?```python\n(.*?)```", text, re.S)
    assert block is not None
    with LocalScheduler(executor="aer").run_in_thread() as scheduler:
        namespace: dict[str, object] = {"base_url": scheduler.base_url, "token": scheduler.token}
        exec(compile(block.group(1), "README.md", "exec"), namespace)
        assert all(job.status == "COMPLETED" for job in scheduler.jobs())
        assert len(scheduler.jobs()) > 1


async def test_without_isal_batches_travel_zlib_compressed_and_run(
    client: AsyncJobClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where isal is missing: zlib's gzip, and the worker settings chosen for it."""
    import asyncjob._batch as batch_module
    import asyncjob._encode as encode_module
    from asyncjob._gzip import zlib_gzip

    packed: list[bytes] = []

    def spy(data: bytes) -> bytes:
        packed.append(zlib_gzip(data))
        return packed[-1]

    monkeypatch.setattr(batch_module, "gzip_bytes", spy)
    monkeypatch.setattr(encode_module, "CHECKS_PER_CIRCUIT", 2)
    monkeypatch.setattr(encode_module, "MAX_WORKERS", 3)
    large = {f"c{i:03d}": (BELL if i % 2 else GHZ3) + f"// {i}\n" for i in range(200)}
    for batch in (large, {"bell": BELL}):
        handle = await client.submit_circuits(batch, shots=100)
        status = await client.poll_job_status(handle, loop_until_complete=True)
        assert status is JobStatus.COMPLETED
        result = await client.get_job_results(handle)
        assert [r["label"] for r in result.results or []] == list(batch)
        assert all(sum(r["results"].values()) == 100 for r in result.results or [])
    assert len(packed) == len(large) + 1  # every circuit went through zlib
