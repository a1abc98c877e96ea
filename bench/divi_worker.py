"""The qoro-divi side of the benchmarks: the same workloads with divi's `QoroService`.

    <divi venv>/bin/python bench/divi_worker.py '{"workload": "submit", ...}'

Runs in a venv with qoro-divi and without asyncjob (only `common`, standard
library, is imported from here). divi takes its API URL from the module
constant ``divi.backends.runners._qoro.API_URL``; it is pointed at the local
scheduler by assignment, divi's code is untouched. The scheduler subprocess is
started with the asyncjob venv's python (``params["python"]``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
from divi.backends import ExecutionResult, JobConfig, QoroService
from divi.backends._results_processing import _decode_histogram_b64
from divi.backends.runners import _qoro
from divi.exceptions import ExecutionCancelledError
from divi.qasm import validate_qasm

POLLING_INTERVAL = 0.5


def service(base_url: str, **options: Any) -> QoroService:
    """A `QoroService` talking to `base_url` (its constructor makes two requests)."""
    _qoro.API_URL = base_url.rstrip("/")
    return QoroService(
        auth_token=TOKEN,
        job_config=JobConfig(simulator_cluster="qoro_maestro", tag="bench"),
        **options,
    )


# --------------------------------------------------------------------------- 1. submit


def _submit_once(base_url: str, circuits: dict[str, str]) -> float:
    svc = service(base_url)
    start = time.perf_counter()
    handle = svc.submit_circuits(circuits)
    elapsed = time.perf_counter() - start
    assert handle.job_id
    return elapsed


def submit(params: dict[str, Any]) -> dict[str, Any]:
    python = params["python"]
    out: dict[str, Any] = {}
    with Server(python, latency=LATENCY) as server:  # warm-up: imports, first connections
        _submit_once(server.base_url, make_batch(20, seed=1))
    for size in params["sizes"]:
        times: list[float] = []
        for run in range(params["repeats"][str(size)]):
            circuits = make_batch(size, seed=size * 1000 + run)
            with Server(python, latency=LATENCY) as server:
                times.append(_submit_once(server.base_url, circuits))
        out[str(size)] = {"times": times}
    return out


# --------------------------------------------------------------------------- 2. results


def results(params: dict[str, Any]) -> dict[str, Any]:
    times: list[float] = []
    for _ in range(params["repeats"]):
        with Server(params["python"], latency=LATENCY) as server:
            job_id = create_job(server.base_url, small_batch(5000))
            svc = service(server.base_url)
            start = time.perf_counter()
            result = svc.get_job_results(ExecutionResult(job_id=job_id))
            times.append(time.perf_counter() - start)
            assert result.results is not None and len(result.results) == 5000
    return {"times": times}


# --------------------------------------------------------------------------- 3. many jobs


def _many_jobs(base_url: str, n_jobs: int, seed: int) -> dict[str, Any]:
    batches = [make_batch(10, seed=seed + i) for i in range(n_jobs)]
    svc = service(base_url, polling_interval=POLLING_INTERVAL)
    got: dict[str, float] = {}

    def follow(handle: ExecutionResult) -> None:
        svc.poll_job_status(handle, loop_until_complete=True, verbose=False)
        result = svc.get_job_results(handle)
        assert result.results is not None
        got[str(handle.job_id)] = time.monotonic()

    with ThreadPoolExecutor(32) as pool:
        start = time.monotonic()
        handles = list(pool.map(svc.submit_circuits, batches))
        submitted = time.monotonic()
        list(pool.map(follow, handles))
        end = time.monotonic()
    return {"start": start, "submitted": submitted, "end": end, "got": got}


def many_jobs(params: dict[str, Any]) -> dict[str, Any]:
    runs = []
    for run in range(params["repeats"]):
        with Server(
            params["python"],
            latency=LATENCY,
            job_duration=params["job_duration"],
            max_concurrent_jobs=10_000,
            watch_jobs=True,
            seed=run,
        ) as server:
            timing = _many_jobs(server.base_url, params["jobs"], seed=run * 10_000)
        runs.append({**timing, "server": server.report})
    return {"runs": runs}


# --------------------------------------------------------------------------- 4. cancellation


def _cancel_once(svc: QoroService, job_id: str) -> float:
    event = threading.Event()
    stamp: list[float] = []

    def fire() -> None:
        time.sleep(0.3)
        stamp.append(time.monotonic())
        event.set()

    thread = threading.Thread(target=fire, daemon=True)
    thread.start()
    with contextlib.suppress(ExecutionCancelledError):
        svc.poll_job_status(
            ExecutionResult(job_id=job_id),
            loop_until_complete=True,
            verbose=False,
            cancellation_event=event,
        )
    done = time.monotonic()
    thread.join()
    return done - stamp[0]


def cancel(params: dict[str, Any]) -> dict[str, Any]:
    # The server answers a hung status request after hang_time: that caps the wait
    # (divi's own bound is its 200 s status timeout).
    with Server(
        params["python"],
        latency=LATENCY,
        hang_rate=1.0,
        fault_endpoints="status",
        hang_time=params["hang_time"],
    ) as server:
        job_id = create_job(server.base_url, small_batch(1), wait=False)
        svc = service(server.base_url, polling_interval=POLLING_INTERVAL)
        times = [_cancel_once(svc, job_id) for _ in range(params["repeats"])]
    return {"QoroService": times}


# --------------------------------------------------------------------------- 5. CPU costs


def cpu(params: dict[str, Any]) -> dict[str, list[float]]:
    """Items per second of divi's equivalent steps, once per repeat on fresh circuits."""
    import openqasm3

    n = params["circuits"]
    n_validate = params["divi_circuits"]
    with open(params["histograms"]) as f:
        encoded = json.load(f)
    small: list[Any] = []
    if params.get("small_histograms"):
        with open(params["small_histograms"]) as f:
            small = json.load(f)
    rates: dict[str, list[float]] = {}
    for run in range(params["repeats"]):
        seed = params["seed"] + 10 * run
        validate = list(make_batch(n_validate, seed=seed).values())
        parse = list(make_batch(params["full_circuits"], seed=seed + 3).values())
        compress = list(make_batch(n, seed=seed + 4).values())
        measured = {
            "validate_qasm": rate(validate_qasm, validate),
            "openqasm3_parse": rate(openqasm3.parse, parse),
            "compress": rate(QoroService._compress_data, compress),
            # divi decodes in place (it replaces `results`): give it copies.
            "decode": rate(_decode_histogram_b64, [dict(r) for r in encoded]),
        }
        if small:
            measured["decode_small"] = rate(_decode_histogram_b64, [dict(r) for r in small])
        for name, value in measured.items():
            rates.setdefault(name, []).append(value)
    return rates


def rss(params: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS while decoding (and keeping) every histogram of the file."""
    return peak_rss(_decode_histogram_b64, params["histograms"])


# --------------------------------------------------------------------------- 7. divi VQE


def divi_vqe(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The same VQE on divi's own `QoroService` (sampling), one fresh scheduler per run."""
    runs = []
    for _ in range(params["repeats"]):
        with Server(params["python"], latency=LATENCY) as server:
            _qoro.API_URL = server.base_url.rstrip("/")
            svc = QoroService(
                auth_token=TOKEN,
                job_config=JobConfig(
                    simulator_cluster="qoro_maestro",
                    tag="bench",
                    shots=VQE_SHOTS,
                    force_sampling=True,
                ),
                polling_interval=POLLING_INTERVAL,
            )
            runs.append(vqe_run(h2_vqe(svc, params["iterations"]), server))
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
