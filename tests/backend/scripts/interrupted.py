"""Wait on a backend call until Ctrl+C; `test_backend_signals.py` sends the SIGINTs.

Usage: interrupted.py BASE_URL TOKEN poll JOB_ID | interrupted.py BASE_URL TOKEN submit
`poll` polls the job until terminal and prints "polling" from its first progress
callback (the wait has begun); `submit` submits a batch. Then it prints the
outcome; exit code 3 for `ExecutionCancelledError`, 4 for `KeyboardInterrupt`.
"""

import sys

from asyncjob import ExecutionCancelledError, ExecutionResult, JobBackend

BELL = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\nmeasure q -> c;\n'

base_url, token, mode, *rest = sys.argv[1:]
backend = JobBackend(base_url, token, polling_interval=0.02)
announced: list[int] = []


def progress(attempt: int, status: str) -> None:
    if not announced:
        announced.append(attempt)
        print("polling", flush=True)


try:
    if mode == "poll":
        backend.poll_job_status(
            ExecutionResult(job_id=rest[0]),
            loop_until_complete=True,
            verbose=False,
            progress_callback=progress,
        )
    else:
        backend.submit_circuits({"bell": BELL})
except ExecutionCancelledError as exc:
    print(f"cancelled: {exc}", flush=True)
    sys.exit(3)
except KeyboardInterrupt:
    print("keyboard interrupt", flush=True)
    sys.exit(4)
print("not interrupted", flush=True)
sys.exit(1)
