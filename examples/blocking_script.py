"""A plain blocking script: submit a batch, poll it with a progress callback, fetch, cancel.

Usage: python examples/blocking_script.py [BASE_URL TOKEN]
The URL and token come from the command line, else from ASYNCJOB_BASE_URL and
ASYNCJOB_TOKEN; with neither, the script starts a local scheduler of its own.
"""

from __future__ import annotations

import contextlib
import os
import sys

from asyncjob import JobBackend, Response

BELL = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""

GHZ = """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[3] c;
h q[0];
cx q[0], q[1];
cx q[1], q[2];
c = measure q;
"""


def connect(stack: contextlib.ExitStack) -> tuple[str, str]:
    """The scheduler to use: argv, the environment, or a local one started here."""
    if len(sys.argv) == 3:
        return sys.argv[1], sys.argv[2]
    if os.environ.get("ASYNCJOB_BASE_URL") and os.environ.get("ASYNCJOB_TOKEN"):
        return os.environ["ASYNCJOB_BASE_URL"], os.environ["ASYNCJOB_TOKEN"]
    from asyncjob.local import LocalScheduler

    scheduler = stack.enter_context(LocalScheduler(job_duration=0.5).run_in_thread())
    print(f"started a local scheduler at {scheduler.base_url}")
    return scheduler.base_url, scheduler.token


def is_synthetic(response: Response) -> bool:
    """The local scheduler's sampler says so in the status body: its counts are made up."""
    body = response.json()
    return isinstance(body, dict) and body.get("synthetic") is True


def show_progress(attempt: int, status: str) -> None:
    print(f"  poll {attempt}: {status}")


def main() -> None:
    with contextlib.ExitStack() as stack:
        base_url, token = connect(stack)
        backend = stack.enter_context(JobBackend(base_url, token, polling_interval=0.1))

        handle = backend.submit_circuits({"bell": BELL, "ghz": GHZ}, shots=500)
        print(f"submitted job {handle.job_id}")
        final: list[Response] = []
        status = backend.poll_job_status(
            handle,
            loop_until_complete=True,
            on_complete=final.append,
            verbose=False,
            progress_callback=show_progress,
        )
        print(f"job {handle.job_id} ended {status}")
        for entry in backend.get_job_results(handle).results or []:
            print(f"  {entry['label']}: {entry['results']}")
        if final and is_synthetic(final[-1]):
            print("  (SYNTHETIC counts from the 'sampler' executor, not a simulation)")

        unwanted = backend.submit_circuits({"bell": BELL})
        backend.cancel_job(unwanted)  # never raises for a job that finished meanwhile
        print(f"second job {unwanted.job_id}: {backend.poll_job_status(unwanted, verbose=False)}")


if __name__ == "__main__":
    main()
