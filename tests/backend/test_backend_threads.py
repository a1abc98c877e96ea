"""`JobBackend` from many threads, from inside event loops and from spawned processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from asyncjob import ExecutionResult, JobBackend, JobStatus

from ._support import BELL, loop_threads


def test_sixteen_threads_share_one_backend(backend: JobBackend) -> None:
    barrier = threading.Barrier(16)

    def work(n: int) -> tuple[JobStatus, ExecutionResult]:
        barrier.wait()
        handle = backend.submit_circuits({f"c{n}": BELL}, shots=10 + n)
        status = backend.poll_job_status(handle, loop_until_complete=True, verbose=False)
        return status, backend.get_job_results(handle)

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(work, range(16)))
    for n, (status, result) in enumerate(outcomes):
        assert status is JobStatus.COMPLETED
        assert result.results is not None
        [entry] = result.results
        assert entry["label"] == f"c{n}"
        assert sum(entry["results"].values()) == 10 + n
    assert len(loop_threads()) == 1  # one loop, one client, one connection pool


def test_called_from_inside_asyncio_run(backend: JobBackend) -> None:
    async def main() -> tuple[JobStatus, ExecutionResult]:
        handle = backend.submit_circuits({"bell": BELL})
        status = backend.poll_job_status(handle, loop_until_complete=True)
        return status, backend.get_job_results(handle)

    status, result = asyncio.run(main())
    assert status is JobStatus.COMPLETED
    assert result.results is not None


def test_called_from_a_thread_running_its_own_loop(backend: JobBackend) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:

        async def job() -> ExecutionResult:
            return backend.run({"bell": BELL})

        result = asyncio.run_coroutine_threadsafe(job(), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    assert result.results is not None


def run_in_worker(backend: JobBackend) -> list[dict[str, Any]] | None:
    """Runs in a spawned process on an unpickled backend."""
    with backend:
        return backend.run({"bell": BELL}, shots=7).results


@pytest.mark.slow
def test_pickled_backend_runs_a_job_in_a_spawned_process(backend: JobBackend) -> None:
    backend.run({"bell": BELL})  # the original's live loop must not get in the way
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        results = pool.apply(run_in_worker, (backend,))
    assert results is not None
    [entry] = results
    assert entry["label"] == "bell"
    assert sum(entry["results"].values()) == 7
