"""The asyncjob side of the benchmarks: one workload per call, timings as JSON.

    python bench/asyncjob_worker.py '{"workload": "submit", ...}'

Runs in the bench venv (asyncjob installed). Each workload starts its own
scheduler subprocess(es) with `common.Server` and prints one JSON object as the
last line of stdout. See `bench/run.py` for the parameters of each workload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any

import anyio
from common import (
    LATENCY,
    TOKEN,
    VQE_SHOTS,
    Server,
    create_job,
    h2_vqe,
    make_batch,
    peak_rss,
    rate,
    run_worker,
    small_batch,
    vqe_run,
)

from asyncjob import AsyncJobClient, ExecutionCancelledError, JobBackend, JobStatus
from asyncjob._batch import encode_circuit
from asyncjob._histogram import decode_result
from asyncjob._qasm import check_batch, check_circuit

POLLING_INTERVAL = 0.5


def client(base_url: str, **options: Any) -> AsyncJobClient:
    return AsyncJobClient(base_url, TOKEN, **options)


# --------------------------------------------------------------------------- 1. submit


async def _submit_once(base_url: str, circuits: dict[str, str]) -> float:
    async with client(base_url) as c:
        start = time.perf_counter()
        handle = await c.submit_circuits(circuits)
        elapsed = time.perf_counter() - start
    assert handle.job_id
    return elapsed


def client_cpu(circuits: dict[str, str]) -> float:
    """The client's own CPU work of a submission: validation and compression."""
    start = time.perf_counter()
    check_batch(list(circuits.items()))
    for source in circuits.values():
        encode_circuit(source)
    return time.perf_counter() - start


def submit(params: dict[str, Any]) -> dict[str, Any]:
    python = params["python"]
    out: dict[str, Any] = {}
    with Server(python, latency=LATENCY) as server:  # warm-up: imports, first connections
        asyncio.run(_submit_once(server.base_url, make_batch(20, seed=1)))
    for size in params["sizes"]:
        times: list[float] = []
        cpu: list[float] = []
        server_cpu: list[float] = []
        for run in range(params["repeats"][str(size)]):
            circuits = make_batch(size, seed=size * 1000 + run)
            with Server(python, latency=LATENCY) as server:
                before = server.cpu_seconds()
                times.append(asyncio.run(_submit_once(server.base_url, circuits)))
                server_cpu.append(server.cpu_seconds() - before)
            # A different batch of the same size: the verdict cache must not help.
            cpu.append(client_cpu(make_batch(size, seed=size * 1000 + 500 + run)))
        out[str(size)] = {"times": times, "client_cpu": cpu, "server_cpu": server_cpu}
    return out


# --------------------------------------------------------------------------- 2. results


async def _fetch(base_url: str, job_id: str, **options: Any) -> float:
    async with client(base_url, **options) as c:
        start = time.perf_counter()
        result = await c.get_job_results(job_id)
        elapsed = time.perf_counter() - start
    assert result.results is not None and len(result.results) == 5000
    return elapsed


def results(params: dict[str, Any]) -> dict[str, Any]:
    times: list[float] = []
    tuned: list[float] = []
    for _ in range(params["repeats"]):
        with Server(params["python"], latency=LATENCY) as server:
            job_id = create_job(server.base_url, small_batch(5000))
            times.append(asyncio.run(_fetch(server.base_url, job_id)))
            tuned.append(asyncio.run(_fetch(server.base_url, job_id, results_concurrency=32)))
    return {"times": times, "times_concurrency_32": tuned}


# --------------------------------------------------------------------------- 3. many jobs


async def _many_jobs(base_url: str, n_jobs: int, seed: int, watch: bool) -> dict[str, Any]:
    batches = [make_batch(10, seed=seed + i) for i in range(n_jobs)]
    got: dict[str, float] = {}
    async with client(base_url, polling_interval=POLLING_INTERVAL, watch=watch) as c:
        start = time.monotonic()
        handles: list[Any] = [None] * n_jobs

        async def submit_one(i: int) -> None:
            handles[i] = await c.submit_circuits(batches[i])

        async with anyio.create_task_group() as tg:
            for i in range(n_jobs):
                tg.start_soon(submit_one, i)
        submitted = time.monotonic()
        async with c.as_completed(handles) as outcomes:
            async for outcome in outcomes:
                assert outcome.status is JobStatus.COMPLETED and outcome.result is not None
                got[str(outcome.handle.job_id)] = time.monotonic()
        end = time.monotonic()
    return {"start": start, "submitted": submitted, "end": end, "got": got}


def many_jobs(params: dict[str, Any]) -> dict[str, Any]:
    """Each repeat twice, interleaved: with the `jobs/watch/` extension (default) and without."""
    runs: dict[str, list[dict[str, Any]]] = {"runs": [], "runs_no_watch": []}
    for run in range(params["repeats"]):
        for key, watch in (("runs", True), ("runs_no_watch", False)):
            with Server(
                params["python"],
                latency=LATENCY,
                job_duration=params["job_duration"],
                max_concurrent_jobs=10_000,
                watch_jobs=True,
                seed=run,
            ) as server:
                timing = asyncio.run(
                    _many_jobs(server.base_url, params["jobs"], seed=run * 10_000, watch=watch)
                )
            runs[key].append({**timing, "server": server.report})
    return runs


# --------------------------------------------------------------------------- 4. cancellation


def _set_later(event: threading.Event, delay: float, stamp: list[float]) -> threading.Thread:
    def fire() -> None:
        time.sleep(delay)
        stamp.append(time.monotonic())
        event.set()

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    return thread


def _cancel_backend(backend: JobBackend, job_id: str) -> float:
    event = threading.Event()
    stamp: list[float] = []
    thread = _set_later(event, 0.3, stamp)
    with contextlib.suppress(ExecutionCancelledError):
        backend.poll_job_status(job_id, loop_until_complete=True, cancellation_event=event)
    done = time.monotonic()
    thread.join()
    return done - stamp[0]


async def _cancel_client(c: AsyncJobClient, job_id: str) -> float:
    event = threading.Event()
    stamp: list[float] = []
    thread = _set_later(event, 0.3, stamp)
    with contextlib.suppress(ExecutionCancelledError):
        await c.poll_job_status(job_id, loop_until_complete=True, cancellation_event=event)
    done = time.monotonic()
    thread.join()
    return done - stamp[0]


async def _cancel_client_runs(base_url: str, job_id: str, repeats: int) -> list[float]:
    async with client(base_url, polling_interval=POLLING_INTERVAL) as c:
        return [await _cancel_client(c, job_id) for _ in range(repeats)]


def cancel(params: dict[str, Any]) -> dict[str, Any]:
    repeats = params["repeats"]
    with Server(
        params["python"],
        latency=LATENCY,
        hang_rate=1.0,
        fault_endpoints="status,watch",  # asyncjob's polls are jobs/watch/ long polls
        hang_time=params["hang_time"],
    ) as server:
        job_id = create_job(server.base_url, small_batch(1), wait=False)
        with JobBackend(server.base_url, TOKEN, polling_interval=POLLING_INTERVAL) as backend:
            backend_times = [_cancel_backend(backend, job_id) for _ in range(repeats)]
        client_times = asyncio.run(_cancel_client_runs(server.base_url, job_id, repeats))
    return {"JobBackend": backend_times, "AsyncJobClient": client_times}


# --------------------------------------------------------------------------- 5. CPU costs


def cpu(params: dict[str, Any]) -> dict[str, list[float]]:
    """Items per second of each client-side step, once per repeat on fresh circuits."""
    import openqasm3

    n = params["circuits"]
    n_full = params["full_circuits"]
    with open(params["histograms"]) as f:
        encoded = json.load(f)
    small: list[Any] = []
    if params.get("small_histograms"):
        with open(params["small_histograms"]) as f:
            small = json.load(f)
    rates: dict[str, list[float]] = {}
    for run in range(params["repeats"]):
        seed = params["seed"] + 10 * run
        fast = list(make_batch(n, seed=seed).items())
        batch = list(make_batch(n, seed=seed + 1).items())
        full = list(make_batch(n_full, seed=seed + 2).items())
        parse = list(make_batch(n_full, seed=seed + 3).values())
        compress = list(make_batch(n, seed=seed + 4).values())
        measured = {
            "check_circuit": rate(lambda item: check_circuit(*item), fast),
            "check_batch": n * rate(check_batch, [batch]),
            "check_circuit_full": rate(lambda item: check_circuit(*item, full=True), full),
            "openqasm3_parse": rate(openqasm3.parse, parse),
            "compress": rate(encode_circuit, compress),
            "decode": rate(decode_result, encoded),
        }
        if small:
            measured["decode_small"] = rate(decode_result, small)
        for name, value in measured.items():
            rates.setdefault(name, []).append(value)
    return rates


def rss(params: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS while decoding (and keeping) every histogram of the file."""
    return peak_rss(decode_result, params["histograms"])


# --------------------------------------------------------------------------- 7. divi VQE


def divi_vqe(params: dict[str, Any]) -> list[dict[str, Any]]:
    """A divi VQE (sampling) on `asyncjob.divi.DiviBackend`, one fresh scheduler per run."""
    from asyncjob.divi import DiviBackend

    runs = []
    for _ in range(params["repeats"]):
        with Server(params["python"], latency=LATENCY) as server:
            backend = DiviBackend(
                server.base_url,
                TOKEN,
                shots=VQE_SHOTS,
                supports_expval=False,
                polling_interval=POLLING_INTERVAL,
            )
            with backend:
                runs.append(vqe_run(h2_vqe(backend, params["iterations"]), server))
    return runs


WORKLOADS = {
    "divi_vqe": divi_vqe,
    "submit": submit,
    "results": results,
    "many_jobs": many_jobs,
    "cancel": cancel,
    "cpu": cpu,
    "rss": rss,
}


if __name__ == "__main__":
    run_worker(WORKLOADS)
