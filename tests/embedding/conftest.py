"""Fixtures of the embedding tests: a local scheduler and the expected results."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from asyncjob import JobBackend
from asyncjob.local import LocalScheduler, ThreadedScheduler

from . import _workers

TOKEN = "embedding-tests-secret-token-3Kp8"
JOBS = 50


@pytest.fixture
def scheduler() -> Iterator[ThreadedScheduler]:
    """A fresh local scheduler (sampler executor) for one test."""
    with LocalScheduler(
        token=TOKEN, executor="sampler", max_concurrent_jobs=8
    ).run_in_thread() as server:
        yield server


@pytest.fixture
def backend(scheduler: ThreadedScheduler) -> Iterator[JobBackend]:
    with JobBackend(
        scheduler.base_url, TOKEN, shots=_workers.SHOTS, polling_interval=0.01
    ) as backend:
        yield backend


@pytest.fixture(scope="session")
def expected() -> dict[int, dict[str, int]]:
    """The counts of every job, from one batch on a separate scheduler (the sampler is
    deterministic per circuit, label and shots)."""
    batch = {_workers.label(i): _workers.circuit(i) for i in range(JOBS)}
    with (
        LocalScheduler(token=TOKEN, executor="sampler").run_in_thread() as server,
        JobBackend(server.base_url, TOKEN, shots=_workers.SHOTS, polling_interval=0.01) as b,
    ):
        result = b.run(batch)
    assert result.results is not None
    return {i: dict(entry["results"]) for i, entry in enumerate(result.results)}


def check_server(scheduler: ThreadedScheduler, jobs: int = JOBS) -> None:
    """Every job was created once, finalized and COMPLETED: no duplicate, no orphan."""
    records = scheduler.jobs()
    labels = sorted(label for record in records for label in record.labels)
    assert labels == sorted(_workers.label(i) for i in range(jobs))
    assert [r for r in records if r.status != "COMPLETED" or not r.finalized] == []
    stats = scheduler.stats
    assert stats.jobs_created == jobs
    assert stats.requests_by_endpoint.get("init", 0) == jobs
