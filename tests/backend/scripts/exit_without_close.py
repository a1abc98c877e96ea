"""Never close a backend: one is garbage-collected, one is still polling at exit.

Usage: exit_without_close.py BASE_URL TOKEN JOB_ID (a job that keeps running).
`test_backend_signals.py` checks that the GC stops the first loop and that the
interpreter exits promptly with the second one busy.
"""

import gc
import sys
import threading

from asyncjob import ExecutionCancelledError, ExecutionResult, JobBackend

base_url, token, job_id = sys.argv[1:4]
handle = ExecutionResult(job_id=job_id)


def loop_threads() -> int:
    return sum(t.name == "asyncjob-loop" for t in threading.enumerate())


collected = JobBackend(base_url, token)
collected.poll_job_status(handle, verbose=False)
cycle: list[object] = [collected]
cycle.append(cycle)  # only the cyclic GC can free it
del collected, cycle
print("loop threads before gc:", loop_threads(), flush=True)
gc.collect()
print("loop threads after gc:", loop_threads(), flush=True)

kept = JobBackend(base_url, token, polling_interval=0.02)
polling = threading.Event()


def wait_forever() -> None:
    try:
        kept.poll_job_status(
            handle, loop_until_complete=True, progress_callback=lambda n, s: polling.set()
        )
    except ExecutionCancelledError as exc:
        print(f"waiter: {exc}", flush=True)


threading.Thread(target=wait_forever, daemon=True).start()
polling.wait(10)
print("exiting with a call in flight", flush=True)
