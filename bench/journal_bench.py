"""The journal's costs: client CPU per job, group commit, file size, events while it is locked.

    python bench/journal_bench.py [--jobs 5000] [--circuits 50000] [--out FILE]

Against fresh `bench/server.py` subprocesses on 127.0.0.1, each with its own
journal file in a temporary directory:

- `--jobs` jobs of 10 random circuits, submitted at once, then followed with
  `as_completed` (long polls, 50 ms added latency, jobs of 1 to 6 s): the
  client's CPU (all its threads: `getrusage`) per job to submit and to follow,
  p95 delay from a job's finish (server clock) to its results in hand, and the
  journal writer's records per transaction; then the same without a journal;
- one submission of `--circuits` circuits: the journal's files on disk after it
  completed (client still open, then closed), per 10,000 circuits;
- a journal whose write lock another process holds: how long a poll takes to
  honour its cancellation event (median of 20).

Prints one JSON line (also written to `--out`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
from common import LATENCY, TOKEN, Server, make_batch, percentile

from asyncjob import AsyncJobClient, ExecutionCancelledError, JobStatus

HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def writer_stats(client: AsyncJobClient) -> dict[str, int] | None:
    writer = getattr(client, "_writer", None)
    if writer is None:
        return None
    return {"transactions": writer.transactions, "records": writer.written}


async def _many_jobs(base_url: str, jobs: int, journal: Path | bool) -> dict[str, Any]:
    batches = [make_batch(10, seed=i) for i in range(jobs)]
    got: dict[str, float] = {}
    async with AsyncJobClient(
        base_url, TOKEN, polling_interval=0.5, journal=journal, max_connections=64
    ) as client:
        handles: list[Any] = [None] * jobs

        async def submit_one(i: int) -> None:
            handles[i] = await client.submit_circuits(batches[i])

        start = cpu()
        async with anyio.create_task_group() as tg:
            for i in range(jobs):
                tg.start_soon(submit_one, i)
        submitted = cpu()
        async with client.as_completed(handles) as outcomes:
            async for outcome in outcomes:
                assert outcome.status is JobStatus.COMPLETED and outcome.result is not None
                got[str(outcome.handle.job_id)] = time.monotonic()
        followed = cpu()
        stats = writer_stats(client)
    return {
        "submit_cpu_ms_per_job": (submitted - start) / jobs * 1000,
        "follow_cpu_ms_per_job": (followed - submitted) / jobs * 1000,
        "got": got,
        "writer": stats,
    }


def many_jobs(python: str, jobs: int, journal: Path | bool) -> dict[str, Any]:
    with Server(
        python,
        latency=LATENCY,
        job_duration="1,6",
        max_concurrent_jobs=10_000,
        watch_jobs=True,
        seed=1,
    ) as server:
        run = asyncio.run(_many_jobs(server.base_url, jobs, journal))
    finished = server.report["finished_at"]
    delays = [at - finished[job] for job, at in run.pop("got").items()]
    run["p95_delay_s"] = percentile(delays, 0.95)
    writer = run["writer"]
    if writer:
        run["records_per_transaction"] = writer["records"] / max(1, writer["transactions"])
    return run


async def _big_submission(base_url: str, circuits: int, journal: Path) -> dict[str, Any]:
    batch = make_batch(circuits, seed=7)
    async with AsyncJobClient(base_url, TOKEN, journal=journal) as client:
        await client.submit_circuits(batch)
        settle = getattr(getattr(client, "_writer", None), "settle", None)
        if settle is not None:  # everything written, the pages of the bodies given back
            await anyio.to_thread.run_sync(settle)
        open_size = on_disk(journal)
    closed_size = on_disk(journal)
    per_10k = 10_000 / circuits / 1e6
    return {
        "circuits": circuits,
        "mb_per_10k_open": open_size * per_10k,
        "mb_per_10k_closed": closed_size * per_10k,
    }


def big_submission(python: str, circuits: int, directory: Path) -> dict[str, Any]:
    with Server(python, latency=0.0, max_concurrent_jobs=1) as server:
        return asyncio.run(_big_submission(server.base_url, circuits, directory / "big.sqlite3"))


async def _locked(base_url: str, journal: Path) -> list[float]:
    latencies: list[float] = []
    async with AsyncJobClient(base_url, TOKEN, journal=journal, polling_interval=0.05) as client:
        handle = await client.submit_circuits(make_batch(2, seed=3))
        for _ in range(20):
            event = threading.Event()
            set_at: list[float] = []

            def fire(event: threading.Event = event, set_at: list[float] = set_at) -> None:
                time.sleep(0.12)  # while a long poll is in flight
                set_at.append(time.monotonic())
                event.set()

            threading.Thread(target=fire).start()
            try:
                await client.poll_job_status(
                    handle, loop_until_complete=True, verbose=False, cancellation_event=event
                )
            except ExecutionCancelledError:
                latencies.append(time.monotonic() - set_at[0])
        await client.cancel_job(handle)
    return latencies


def locked_journal(python: str, directory: Path) -> dict[str, Any]:
    journal = directory / "locked.sqlite3"
    with Server(python, latency=LATENCY, job_duration=3600) as server:
        asyncio.run(_prepare(server.base_url, journal))
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(journal)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            started = time.monotonic()
            latencies = asyncio.run(_locked(server.base_url, journal))
            took = time.monotonic() - started
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(10)
    return {
        "event_to_raise_ms_median": statistics.median(latencies) * 1000,
        "event_to_raise_ms_max": max(latencies) * 1000,
        "whole_run_s": took,
    }


async def _prepare(base_url: str, journal: Path) -> None:
    """Create the journal file (so the holder can lock it)."""
    async with AsyncJobClient(base_url, TOKEN, journal=journal) as client:
        handle = await client.submit_circuits(make_batch(1, seed=1))
        await client.cancel_job(handle)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--circuits", type=int, default=50_000)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if "locked" not in skip:
            out["locked_journal"] = locked_journal(sys.executable, directory)
            print(json.dumps(out["locked_journal"]), flush=True)
        if "size" not in skip:
            out["big_submission"] = big_submission(sys.executable, args.circuits, directory)
            print(json.dumps(out["big_submission"]), flush=True)
        if "jobs" not in skip:
            out["many_jobs"] = many_jobs(sys.executable, args.jobs, directory / "many.sqlite3")
            print(json.dumps(out["many_jobs"]), flush=True)
        if "nojournal" not in skip:  # the same without a journal: what the journal costs
            out["many_jobs_no_journal"] = many_jobs(sys.executable, args.jobs, False)
            print(json.dumps(out["many_jobs_no_journal"]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
