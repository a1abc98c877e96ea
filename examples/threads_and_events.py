"""A pipeline-like loop on worker threads, stopped from another thread by a `threading.Event`.

Usage: python examples/threads_and_events.py [BASE_URL TOKEN]
The URL and token come from the command line, else from ASYNCJOB_BASE_URL and
ASYNCJOB_TOKEN; with neither, the script starts a local scheduler of its own.

Four workers share one `JobBackend` (one loop thread, one connection pool) and
run batch after batch. Once enough batches are done, the main thread sets the
stop event: every worker's blocking call returns within 100 ms, requests in
flight included, with `ExecutionCancelledError`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from asyncjob import ExecutionCancelledError, JobBackend

BELL = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""

WORKERS = 4
BATCHES = 6
"""The main thread stops the pipeline once this many batches are done."""


def connect(stack: contextlib.ExitStack) -> tuple[str, str]:
    """The scheduler to use: argv, the environment, or a local one started here."""
    if len(sys.argv) == 3:
        return sys.argv[1], sys.argv[2]
    if os.environ.get("ASYNCJOB_BASE_URL") and os.environ.get("ASYNCJOB_TOKEN"):
        return os.environ["ASYNCJOB_BASE_URL"], os.environ["ASYNCJOB_TOKEN"]
    from asyncjob.local import LocalScheduler

    scheduler = stack.enter_context(LocalScheduler(job_duration=0.2).run_in_thread())
    print(f"started a local scheduler at {scheduler.base_url}")
    return scheduler.base_url, scheduler.token


class Progress:
    """Counts finished batches; `enough` is set at `BATCHES` of them (or when a worker fails)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = 0
        self.enough = threading.Event()

    def add(self) -> None:
        with self.lock:
            self.done += 1
            if self.done >= BATCHES:
                self.enough.set()


def worker(backend: JobBackend, stop: threading.Event, progress: Progress) -> int:
    """Run batches until `stop` is set (a job being waited on is then cancelled too)."""
    batches = 0
    try:
        while True:
            handle = backend.submit_circuits({f"b{batches}": BELL}, cancellation_event=stop)
            try:
                backend.poll_job_status(
                    handle, loop_until_complete=True, verbose=False, cancellation_event=stop
                )
            except ExecutionCancelledError:
                backend.cancel_job(handle)  # the event ends only the wait: cancel the job too
                raise
            backend.get_job_results(handle)
            batches += 1
            progress.add()
    except ExecutionCancelledError:
        return batches
    finally:
        progress.enough.set()  # a failing worker must not leave main waiting


def main() -> None:
    with contextlib.ExitStack() as stack:
        base_url, token = connect(stack)
        backend = stack.enter_context(JobBackend(base_url, token, polling_interval=0.05))
        stop = threading.Event()
        progress = Progress()
        with ThreadPoolExecutor(WORKERS) as pool:
            workers = [pool.submit(worker, backend, stop, progress) for _ in range(WORKERS)]
            progress.enough.wait()
            print(f"{progress.done} batches done: stopping the pipeline from the main thread")
            stop.set()
            for n, future in enumerate(workers):
                batches = future.result()
                print(f"worker {n}: stopped after {batches} batch{'' if batches == 1 else 'es'}")
        print("pipeline stopped")


if __name__ == "__main__":
    main()
