"""asyncjob at scale, one workload per call (issue 16's figures); timings as JSON.

    python bench/scale_worker.py '{"workload": "submit", ...}'

Public API only on the client side (`AsyncJobClient`); the histogram codec of
the decode workload is asyncjob's own (`asyncjob._histogram`, the only way to
time decoding alone). Every workload starts its own scheduler subprocess(es)
with `common.Server`. See `bench/scale.py` for the parameters.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import gzip
import importlib
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from common import LATENCY, TOKEN, Server, create_job, make_batch, run_worker, small_batch

import asyncjob

T = TypeVar("T")

TICK = 0.005
"""The ticker's period: the loop stall is the largest gap between ticks minus this."""
STARTED_PER_TURN = 250
"""Submissions the many-jobs harness starts per loop turn."""
FLOOR_GZIP_LEVEL = 6
"""gzip level of the floor's compression (asyncjob's level when issue 16 was measured)."""


# --------------------------------------------------------------------------- instruments


class Ticker:
    """A task that sleeps `TICK` in a loop and keeps the largest gap between its wake-ups.

    It also keeps, over all gaps, the most CPU time the loop thread spent in one
    gap outside the garbage collector's passes, minus the tick's 5 ms (`max_own`:
    the work of the code on the loop, asyncjob's and the harness's), and the most
    time the collector ran within one gap, on any thread (`max_gc`: its passes
    cost more the more live objects the process holds). The rest of a gap is
    waiting: for a core (shared with the scheduler's processes) or for the GIL
    (held by a worker thread).
    """

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.gaps_over_20ms = 0
        self.max_own = 0.0
        self.max_gc = 0.0
        self._last = time.perf_counter()
        self._last_cpu = time.thread_time()
        self._thread = threading.get_ident()
        self._gc_all = self._gc_loop = 0.0
        self._gc_marks = (0.0, 0.0)
        self._gc_started = (0.0, 0.0)
        self._task: asyncio.Task[None] | None = None

    def _collector(self, phase: str, info: dict[str, int]) -> None:
        """`gc.callbacks`: the wall time of every pass, and the loop thread's CPU in its own."""
        now = (time.perf_counter(), time.thread_time())
        if phase == "start":
            self._gc_started = now
            return
        self._gc_all += now[0] - self._gc_started[0]
        if threading.get_ident() == self._thread:
            self._gc_loop += now[1] - self._gc_started[1]

    async def _run(self) -> None:
        self._last = time.perf_counter()
        self._last_cpu = time.thread_time()
        while True:
            await asyncio.sleep(TICK)
            self._note(time.perf_counter())

    def _note(self, now: float) -> None:
        gap = now - self._last
        cpu = time.thread_time()
        gc_all, gc_loop = self._gc_all - self._gc_marks[0], self._gc_loop - self._gc_marks[1]
        # On the stall's scale: CPU during the tick's own 5 ms is not a stall.
        self.max_own = max(self.max_own, cpu - self._last_cpu - gc_loop - TICK)
        self.max_gc = max(self.max_gc, gc_all)
        self._last, self._last_cpu, self._gc_marks = now, cpu, (self._gc_all, self._gc_loop)
        if gap > self.max_gap:
            self.max_gap = gap
        if gap - TICK > 0.020:
            self.gaps_over_20ms += 1

    async def __aenter__(self) -> Ticker:
        self._thread = threading.get_ident()
        self._task = asyncio.get_running_loop().create_task(self._run())
        gc.callbacks.append(self._collector)
        try:
            await asyncio.sleep(0)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        try:
            # The measured call's last step ran just now, in this loop iteration: the
            # gap since the last tick counts too (a stall at the very end is a stall).
            self._note(time.perf_counter())
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            gc.callbacks.remove(self._collector)

    @property
    def stall(self) -> float:
        return max(0.0, self.max_gap - TICK)


async def measured(
    make: Callable[[], Awaitable[T]], ticker: bool = True
) -> tuple[T, dict[str, float]]:
    """Run `make()` under a ticker: its value, wall time, process CPU and max loop stall.

    The ticker costs CPU of its own (~27 ms a second here, every wake-up of an
    idle loop): `ticker=False` times CPU without it, and no stall.
    """
    async with Ticker() if ticker else contextlib.nullcontext() as tick:
        cpu = time.process_time()
        start = time.perf_counter()
        value = await make()
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
    figures = {"wall": wall, "cpu": cpu}
    if isinstance(tick, Ticker):
        figures |= {
            "stall": tick.stall,
            "stalls_over_20ms": float(tick.gaps_over_20ms),
            "stall_own": tick.max_own,
            "stall_gc": tick.max_gc,
        }
    return value, figures


def floor_cpu(circuits: dict[str, str], max_payload: int) -> dict[str, Any]:
    """CPU of gzip + base64 of every circuit, and the round trips the protocol needs.

    One request (`job/init/` carrying the batch as its `first_chunk`) if the
    batch fits in a request, else `job/init/`, the non-final chunks, then the
    final one: 3 round trips.
    """
    start = time.process_time()
    size = 0
    for label, source in circuits.items():
        packed = base64.b64encode(gzip.compress(source.encode(), FLOOR_GZIP_LEVEL, mtime=0))
        size += len(packed) + len(label) + 6
    cpu = time.process_time() - start
    round_trips = 1 if size + 1024 <= max_payload else 3
    figures: dict[str, Any] = {
        "compress_cpu": cpu,
        "round_trips": float(round_trips),
        "body_bytes": float(size),
    }
    # The same with the client's own compressor (ISA-L's gzip since 9b75cc4), looked
    # up by name: the baseline runs against older packages, which may lack it.
    encode = getattr(importlib.import_module("asyncjob._batch"), "encode_circuit", None)
    if encode is not None:
        start = time.process_time()
        own_size = sum(len(encode(s)) + len(label) + 6 for label, s in circuits.items())
        figures["own_compress_cpu"] = time.process_time() - start
        figures["own_round_trips"] = 1.0 if own_size + 1024 <= max_payload else 3.0
    gzip_module = sys.modules.get("asyncjob._gzip")
    figures["compressor"] = getattr(gzip_module, "COMPRESSOR", "zlib")
    return figures


def max_payload() -> int:
    limits = getattr(asyncjob, "Limits", None)
    value = getattr(limits(), "max_payload_bytes", None) if limits is not None else None
    return int(value) if isinstance(value, int) else int(0.95 * 1024 * 1024)


def disk_bytes(path: Path) -> int:
    """Bytes on disk of an SQLite file and its -wal / -shm / -journal companions."""
    total = 0
    for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            total += (path.parent / name).stat().st_size
    return total


def client(base_url: str, **options: Any) -> asyncjob.AsyncJobClient:
    return asyncjob.AsyncJobClient(base_url, TOKEN, **options)


# --------------------------------------------------------------------------- submit


async def _submit(base_url: str, circuits: dict[str, str], journal: Path) -> dict[str, float]:
    async with client(base_url, journal=str(journal)) as c:
        handle, figures = await measured(lambda: c.submit_circuits(circuits))
        assert handle.job_id
        figures["journal_open_bytes"] = float(disk_bytes(journal))
    figures["journal_bytes"] = float(disk_bytes(journal))
    return figures


def submit(params: dict[str, Any]) -> dict[str, Any]:
    """Each size, each repeat: a fresh scheduler, a fresh journal, a fresh random batch."""
    python = params["python"]
    out: dict[str, Any] = {}
    workdir = Path(tempfile.mkdtemp(prefix="asyncjob-scale-"))
    with Server(python, latency=LATENCY) as server:  # warm-up: imports, first connections
        asyncio.run(_submit(server.base_url, make_batch(20, seed=1), workdir / "warm.sqlite3"))
    limit = max_payload()
    for size in params["sizes"]:
        runs: list[dict[str, float]] = []
        for run in range(params["repeats"][str(size)]):
            circuits = make_batch(size, seed=size * 1000 + run)
            journal = workdir / f"journal-{size}-{run}.sqlite3"
            gc.collect()
            with Server(python, latency=LATENCY) as server:
                before = server.cpu_seconds()
                figures = asyncio.run(_submit(server.base_url, circuits, journal))
                figures["server_cpu"] = server.cpu_seconds() - before
            figures.update(floor_cpu(circuits, limit))
            figures["floor"] = figures["round_trips"] * LATENCY + figures["compress_cpu"]
            if "own_compress_cpu" in figures:
                own = figures["own_round_trips"] * LATENCY + figures["own_compress_cpu"]
                figures["own_floor"] = own
            runs.append(figures)
            print(f"    {size}: {json.dumps(figures)}", flush=True)
            journal.unlink(missing_ok=True)
            del circuits
        out[str(size)] = runs
    return out


# --------------------------------------------------------------------------- fetch


async def _fetch(base_url: str, job_id: str, n: int) -> dict[str, float]:
    async with client(base_url, journal=False) as c:
        result, figures = await measured(lambda: c.get_job_results(job_id))
    assert result.results is not None and len(result.results) == n
    # The floor of the stall: one full collection while the results are alive, which
    # any program holding them pays whenever the collector runs, in its code or ours.
    start = time.perf_counter()
    gc.collect()
    figures["full_collection"] = time.perf_counter() - start
    del result
    return figures


def fetch(params: dict[str, Any]) -> dict[str, Any]:
    """`get_job_results` of a COMPLETED job of `n` small circuits, set up with plain HTTP."""
    n = params["circuits"]
    runs = []
    with Server(params["python"], latency=LATENCY) as server:
        start = time.monotonic()
        job_id = create_job(server.base_url, small_batch(n, n_qubits=params["n_qubits"]))
        setup = time.monotonic() - start
        for _ in range(params["repeats"]):
            gc.collect()
            runs.append(asyncio.run(_fetch(server.base_url, job_id, n)))
            print(f"    fetch {n}: {json.dumps(runs[-1])}", flush=True)
    return {"runs": runs, "setup_seconds": setup}


# --------------------------------------------------------------------------- many jobs


async def _noop_gather(n_jobs: int) -> dict[str, float]:
    """The stall of a gather of `n_jobs` coroutines doing nothing, for reference.

    asyncio runs the first step of every task a gather creates in one loop
    iteration: a program starting its submissions that way stalls its loop
    this long by itself. The measured submissions start `STARTED_PER_TURN`
    per turn instead.
    """

    async def nothing() -> None:
        await asyncio.sleep(0)

    async def gather_all() -> None:
        await asyncio.gather(*(nothing() for _ in range(n_jobs)))

    _, figures = await measured(gather_all)
    return figures


async def _many_jobs(
    base_url: str,
    n_jobs: int,
    seed: int,
    watch: bool,
    interval: float,
    journal: Path,
    ticker: bool = True,
) -> dict[str, Any]:
    batches = [make_batch(1 + i % 2, seed=seed + i) for i in range(n_jobs)]
    got: dict[str, float] = {}
    options = {"polling_interval": interval, "watch": watch, "journal": str(journal)}
    noop = await _noop_gather(n_jobs) if ticker else {}
    async with client(base_url, **options) as c:
        handles: list[Any] = [None] * n_jobs

        async def submit_one(i: int) -> None:
            handles[i] = await c.submit_circuits(batches[i])

        async def submit_all() -> None:
            # STARTED_PER_TURN tasks a loop turn: the harness's own steps stay small
            # (one gather of them all is timed apart, `_noop_gather`).
            async with asyncio.TaskGroup() as tg:
                for i in range(n_jobs):
                    tg.create_task(submit_one(i))
                    if i % STARTED_PER_TURN == STARTED_PER_TURN - 1:
                        await asyncio.sleep(0)

        async def follow() -> None:
            async with c.as_completed(handles) as outcomes:
                async for outcome in outcomes:
                    assert outcome.status is asyncjob.JobStatus.COMPLETED
                    assert outcome.result is not None
                    got[str(outcome.handle.job_id)] = time.monotonic()

        _, submitting = await measured(submit_all, ticker)
        follow_start = time.monotonic()
        _, following = await measured(follow, ticker)
    return {
        "submit": submitting,
        "follow": following,
        "follow_start": follow_start,
        "got": got,
        "noop_gather": noop,
    }


def many_jobs(params: dict[str, Any]) -> dict[str, Any]:
    """Each repeat, each shape (`[key, watch, job_duration]`): a fresh scheduler and journal.

    Shapes differ by `jobs/watch/` long polls (default) or `watch=False`, and by
    how long jobs run: jobs that finish during the submission, or jobs that
    outlive it (which time `as_completed` alone).
    """
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in params["shapes"]}
    workdir = Path(tempfile.mkdtemp(prefix="asyncjob-scale-"))

    def one(run: int, key: str, watch: bool, job_duration: str, ticker: bool) -> Any:
        gc.collect()
        with Server(
            params["python"],
            latency=LATENCY,
            job_duration=job_duration,
            max_concurrent_jobs=100_000,
            finish_times=True,
            seed=run,
        ) as server:
            timing = asyncio.run(
                _many_jobs(
                    server.base_url,
                    params["jobs"],
                    seed=run * 100_000,
                    watch=watch,
                    interval=params["polling_interval"],
                    journal=workdir / f"journal-{key}-{run}-{ticker}.sqlite3",
                    ticker=ticker,
                )
            )
        return timing, server.report

    for run in range(params["repeats"]):
        for key, watch, job_duration in params["shapes"]:
            timing, report = one(run, key, watch, job_duration, ticker=True)
            finished = report.pop("finished_at")
            got = timing.pop("got")
            delays = [t - finished[job] for job, t in got.items()]
            # The part of the delay after following began (jobs that finished while
            # others were still being submitted count from the start of following).
            follow_delays = [
                t - max(finished[job], timing["follow_start"]) for job, t in got.items()
            ]
            finished_before_follow = sum(
                1 for job in finished.values() if job < timing["follow_start"]
            )
            entry = {
                **timing,
                "job_duration": job_duration,
                "server": report,
                "delays": summary_of(delays),
                "follow_delays": summary_of(follow_delays),
                "finished_before_follow": finished_before_follow,
            }
            if watch:  # the CPU goals' runs: the same, without the ticker's own CPU
                quiet, _ = one(run, key, watch, job_duration, ticker=False)
                entry["without_ticker"] = {
                    "submit_cpu": quiet["submit"]["cpu"],
                    "follow_cpu": quiet["follow"]["cpu"],
                }
            runs[key].append(entry)
            print(f"    {key}: {json.dumps(entry)}", flush=True)
    return runs


def summary_of(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def q(p: float) -> float:
        pos = (len(ordered) - 1) * p
        low = int(pos)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)

    return {
        "n": float(len(ordered)),
        "median": statistics.median(ordered),
        "p95": q(0.95),
        "max": ordered[-1],
        "min": ordered[0],
    }


# --------------------------------------------------------------------------- decode


def histograms(count: int, n_bits: int, outcomes: int, seed: int) -> list[dict[str, object]]:
    """`count` encoded histograms of `n_bits` bits with `outcomes` distinct outcomes each."""
    from asyncjob._histogram import encode_histogram

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        chosen = rng.sample(range(1 << n_bits), outcomes)
        counts = {format(o, f"0{n_bits}b"): rng.choice((1, 1, 1, 2, 3, 7)) for o in chosen}
        out.append(encode_histogram(counts, n_bits))
    return out


def _cpu(func: Callable[[Any], object], items: list[Any]) -> float:
    """This process's CPU time to run `func` on every item (the machine's other load counts
    little)."""
    start = time.process_time()
    for item in items:
        func(item)
    return time.process_time() - start


def decode(params: dict[str, Any]) -> dict[str, Any]:
    """Results/s of asyncjob's decoder and divi's (numba) on the same histograms, warm.

    The decoders take turns on blocks of a few tens of milliseconds (which goes first
    alternates), and each block gives a ratio: the machine's speed drifts by tens of
    percent within seconds here, and a pair of neighbouring blocks shares its state.
    """
    from divi.backends._results_processing import _decode_histogram_b64

    from asyncjob._histogram import decode_result

    out: dict[str, Any] = {}
    for name, (count, n_bits, outcomes, block) in params["sizes"].items():
        encoded = histograms(count, n_bits, outcomes, seed=n_bits)
        for item in encoded[:50]:  # warm both: numba compiles on first call
            decode_result(item)
            _decode_histogram_b64(dict(item))
        figures: dict[str, list[float]] = {"asyncjob": [], "divi": [], "paired": []}
        for _ in range(params["repeats"]):
            cpu = {"asyncjob": 0.0, "divi": 0.0}
            for number, start in enumerate(range(0, count, block)):
                items = encoded[start : start + block]
                copies = [dict(r) for r in items]  # divi decodes in place: copies
                if number % 2:
                    theirs, ours = _cpu(_decode_histogram_b64, copies), _cpu(decode_result, items)
                else:
                    ours, theirs = _cpu(decode_result, items), _cpu(_decode_histogram_b64, copies)
                cpu["asyncjob"] += ours
                cpu["divi"] += theirs
                figures["paired"].append(theirs / ours)
            for decoder, seconds in cpu.items():
                figures[decoder].append(count / seconds)
        out[name] = {"count": count, "n_bits": n_bits, "outcomes": outcomes, **figures}
        print(f"    decode {name}: {json.dumps(out[name])}", flush=True)
    return out


WORKLOADS = {"submit": submit, "fetch": fetch, "many_jobs": many_jobs, "decode": decode}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    run_worker(WORKLOADS)
