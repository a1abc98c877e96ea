"""The same 50 jobs driven from real pipeline engines against one local scheduler.

multiprocessing (fork and spawn), `ProcessPoolExecutor` with a module-global
backend, and a Dask `distributed` cluster of 2 worker processes to which the
backend is shipped by pickling. Each time: every job created once, COMPLETED,
its results exact, and no wait without a bound.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from asyncjob import JobBackend
from asyncjob.local import ThreadedScheduler

from . import _workers
from .conftest import JOBS, check_server

WAIT = 180.0


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(
            m,
            marks=pytest.mark.skipif(
                m not in multiprocessing.get_all_start_methods(), reason=f"no {m}"
            ),
        )
        for m in ("fork", "spawn")
    ],
)
def test_multiprocessing_pool(
    method: str,
    scheduler: ThreadedScheduler,
    backend: JobBackend,
    expected: dict[int, dict[str, int]],
) -> None:
    """The backend pickles to its configuration; each task runs on its own copy."""
    with multiprocessing.get_context(method).Pool(2) as pool:
        results = pool.map_async(partial(_workers.run_job, backend), range(JOBS)).get(WAIT)
    assert dict(results) == expected
    check_server(scheduler)


def test_process_pool_executor_with_a_module_global_backend(
    scheduler: ThreadedScheduler, backend: JobBackend, expected: dict[int, dict[str, int]]
) -> None:
    """Finding 2: workers forked from a parent whose global backend has a running loop."""
    _workers.BACKEND = backend
    assert _workers.run_with_global(0) == (0, expected[0])  # the parent's loop is running
    context = multiprocessing.get_context("fork")
    pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=context)
    try:
        futures = [pool.submit(_workers.run_with_global, i) for i in range(1, JOBS)]
        done, pending = concurrent.futures.wait(futures, timeout=WAIT)
        assert not pending, f"{len(pending)} jobs hung in the workers"
        results = dict(future.result() for future in done)
    finally:
        _workers.BACKEND = None
        _shutdown(pool)
    assert {0: expected[0], **results} == expected
    check_server(scheduler)


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A Dask cluster of 2 worker processes on 127.0.0.1 only, for the module."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_dask_distributed_cluster(
    dask_client: Any,
    scheduler: ThreadedScheduler,
    backend: JobBackend,
    expected: dict[int, dict[str, int]],
) -> None:
    """A backend created on the client, shipped to the workers by pickling."""
    from distributed import wait

    futures = dask_client.map(_workers.run_job, [backend] * JOBS, range(JOBS), pure=False)
    _, pending = wait(futures, timeout=WAIT)
    assert not pending
    results = dask_client.gather(futures)
    assert dict(results) == expected
    check_server(scheduler)


def _shutdown(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Stop the pool without waiting on a worker that hangs (a regression must not hang CI)."""
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(WAIT)
        if process.is_alive():
            process.kill()
