"""A scaled-down soak (bench/soak.py, 40 jobs) through 502/503s, 429s, resets and hangs."""

from __future__ import annotations

import anyio
import pytest

from .conftest import load_soak

pytestmark = pytest.mark.slow


async def test_soak_40_jobs_through_faults_lose_nothing_and_duplicate_nothing() -> None:
    soak = load_soak()
    settings = soak.SoakSettings(jobs=40, circuits=10, concurrency=10, seed=4)
    with anyio.fail_after(120):  # a bound against hangs; the run takes a few seconds
        report = await soak.soak(settings)

    assert report.problems == []
    # Every job came back COMPLETED, with its labels in order and the sampler's counts.
    assert report.jobs_ok == 40
    assert report.circuits_checked == 400
    # The server's own record: one job per submission, each finalized with its labels once.
    assert report.server_jobs == 40
    assert report.duplicate_jobs == 0
    assert report.unfinalized == 0
    stats = report.stats
    assert stats.jobs_created == stats.jobs_finalized == stats.jobs_completed == 40
    # The faults really happened, every kind of them...
    for kind in ("error", "rate_limit", "reset", "hang"):
        assert stats.faults_injected.get(kind, 0) >= 1, kind
    # ...and the client retried through them.
    assert sum(report.retries.values()) >= stats.faults_injected["rate_limit"]
    assert report.token_in_logs == 0


async def test_lost_responses_to_init_and_chunks_are_refused_as_duplicates() -> None:
    """Every init/chunk processed but whose answer was lost is retried with the same key.

    The server sees the retry as a duplicate: its count of refused duplicates is at
    least the number of faults that struck after processing an init or a chunk.
    """
    from asyncjob import AsyncJobClient, PollingPolicy, RetryPolicy
    from asyncjob.local import FaultConfig, LocalScheduler

    soak = load_soak()
    faults = FaultConfig(
        seed=7, error_rate=0.3, reset_rate=0.1, error_when="after", only=("init", "add_circuits")
    )
    async with LocalScheduler(faults=faults, executor="sampler") as scheduler:
        async with AsyncJobClient(
            scheduler.base_url,
            scheduler.token,
            retry=RetryPolicy(attempts=20, initial=0.001, max_backoff=0.01),
            polling=PollingPolicy(interval=0.01),
            limits=soak.asyncjob.Limits(max_payload_bytes=1000),
        ) as client:
            with anyio.fail_after(60):
                for job in range(15):
                    circuits = soak.batch(job, 10)
                    result = await client.run(circuits, shots=100)
                    assert [r["label"] for r in result.results or []] == list(circuits)
        lost = [
            e
            for e in scheduler.fault_log
            if e.phase == "after" and e.endpoint in ("init", "add_circuits")
        ]
        by_endpoint = {
            name: sum(e.endpoint == name for e in lost) for name in ("init", "add_circuits")
        }
        assert by_endpoint["init"] >= 1 and by_endpoint["add_circuits"] >= 1
        stats = scheduler.stats
        assert stats.duplicate_inits_refused >= by_endpoint["init"]
        assert stats.duplicate_chunks_refused >= by_endpoint["add_circuits"]
        records = scheduler.jobs()
        assert len(records) == 15
        assert all(r.finalized and r.status == "COMPLETED" for r in records)
        assert all(len(set(r.labels)) == len(r.labels) == 10 for r in records)
