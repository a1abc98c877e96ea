"""A local scheduler for the benchmarks: `asyncjob serve` plus a report on exit.

Prints the base URL as its first line (like ``asyncjob serve``), serves until
SIGTERM, then prints one JSON line: the scheduler's `stats` (requests by
endpoint, ...) and, with ``--watch-jobs``, the `time.monotonic()` at which each
job became terminal. The times are taken by a task on the server's own loop
that `LocalScheduler.wait_until` wakes at every job state change, so they are
within one loop iteration of the change (public API only, no internals).

    python bench/server.py --token T --latency 0.05 [--job-duration MIN,MAX]
        [--hang-rate 1.0 --fault-endpoints status --hang-time S] [--watch-jobs]
        [--decode-workers N] [--finish-times]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import threading
import time
from typing import Any

from asyncjob._qasm import check_circuit
from asyncjob.local import CircuitTask, FaultConfig, LocalScheduler

WARM_UP = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
    "h q[0];\nrx(0.5) q[1];\ncx q[0],q[1];\nmeasure q -> c;\n"
)


def _duration(text: str) -> float | tuple[float, float]:
    if "," in text:
        low, _, high = text.partition(",")
        return (float(low), float(high))
    return float(text)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token", required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--job-duration", type=_duration, default=0.0)
    parser.add_argument("--max-concurrent-jobs", type=int, default=4)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--hang-time", type=float, default=3600.0)
    parser.add_argument("--fault-endpoints", default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--decode-workers", type=int, default=0)
    parser.add_argument("--watch-jobs", action="store_true")
    parser.add_argument(
        "--finish-times",
        action="store_true",
        help="report each job's finish time once, on exit (cheap with thousands of jobs)",
    )
    return parser.parse_args()


async def serve(args: argparse.Namespace) -> dict[str, Any]:
    faults = FaultConfig(
        seed=args.seed,
        only=args.fault_endpoints.split(",") if args.fault_endpoints else None,
        latency=args.latency,
        hang_rate=args.hang_rate,
        hang_time=args.hang_time,
    )
    scheduler = LocalScheduler(
        token=args.token,
        faults=faults,
        job_duration=args.job_duration,
        max_concurrent_jobs=args.max_concurrent_jobs,
        seed=args.seed,
        decode_workers=args.decode_workers,
        executor="sampler",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    finished: dict[str, float] = {}

    def record_finished() -> bool:
        now = time.monotonic()
        for job in scheduler.jobs():
            if job.status in ("COMPLETED", "FAILED", "CANCELLED") and job.id not in finished:
                finished[job.id] = now
        return stop.is_set()

    # Warm up what every job goes through (regexes, gate tables), so that the
    # first run on a fresh scheduler measures the client, not a cold server.
    check_circuit("warm-up", WARM_UP)
    scheduler.executor.run([CircuitTask("warm-up", WARM_UP, shots=10)], threading.Event())
    async with scheduler:
        print(scheduler.base_url, flush=True)
        watcher = None
        if args.watch_jobs:
            watcher = asyncio.create_task(scheduler.wait_until(record_finished))
        await stop.wait()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        stats = scheduler.stats
        if args.finish_times:
            finished.update(_finish_times(scheduler))
    return {
        "requests_total": stats.requests_total,
        "bytes_received": stats.bytes_received,
        "requests_by_endpoint": dict(stats.requests_by_endpoint),
        "jobs_created": stats.jobs_created,
        "jobs_completed": stats.jobs_completed,
        "finished_at": finished,
    }


def _finish_times(scheduler: LocalScheduler) -> dict[str, float]:
    """Each terminal job's finish time, on the `time.monotonic()` clock.

    The `--watch-jobs` task rescans every job at every state change, which is
    quadratic in the number of jobs (seconds of server CPU at 5,000 jobs); this
    reads each job's `finished_at` (wall clock) once, when the server stops.
    """
    offset = time.time() - time.monotonic()
    return {
        record.id: record.finished_at - offset
        for record in scheduler.jobs()
        if record.finished_at is not None
    }


def main() -> None:
    report = asyncio.run(serve(parse_args()))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
