"""Many jobs from a Dask cluster: the scheduler is remote, the client runs in every worker.

Usage: python examples/dask_pipeline.py [BASE_URL TOKEN]
Without arguments (or ASYNCJOB_BASE_URL / ASYNCJOB_TOKEN) it starts a local
scheduler. Either way it starts a Dask `LocalCluster` of 2 worker processes on
127.0.0.1; on a real cluster, pass `distributed.Client("tcp://scheduler:8786")`
instead. Needs `pip install "dask[distributed]"`.

The `JobBackend` is created here and shipped to the workers by pickling: only its
configuration travels, and each worker process starts its own event loop and
connection pool on first use. Dask starts worker processes, so the script
keeps the `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import math
import os
import sys

from asyncjob import JobBackend

TEMPLATE = (
    'OPENQASM 2.0; include "qelib1.inc"; qreg q[1]; creg c[1]; ry({theta}) q[0]; measure q -> c;'
)


def sweep_point(backend: JobBackend, step: int) -> tuple[int, int]:
    """One job, run on a Dask worker: the counts of 1 at one rotation angle."""
    result = backend.run({f"theta{step}": TEMPLATE.format(theta=step * math.pi / 20)})
    assert result.results is not None
    return step, result.results[0]["results"].get("1", 0)


def run_on_cluster(base_url: str, token: str, steps: int = 20) -> list[tuple[int, int]]:
    """Run `steps` jobs on a 2-process Dask cluster; results in step order."""
    from distributed import Client, LocalCluster

    backend = JobBackend(base_url, token, shots=200, polling_interval=0.05)
    with (
        LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=2,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        futures = client.map(sweep_point, [backend] * steps, range(steps), pure=False)
        return sorted(client.gather(futures))


def main() -> None:
    if len(sys.argv) == 3:
        base_url, token = sys.argv[1], sys.argv[2]
    elif os.environ.get("ASYNCJOB_BASE_URL") and os.environ.get("ASYNCJOB_TOKEN"):
        base_url, token = os.environ["ASYNCJOB_BASE_URL"], os.environ["ASYNCJOB_TOKEN"]
    else:
        from asyncjob.local import LocalScheduler

        with LocalScheduler().run_in_thread() as scheduler:
            print("started a local scheduler at", scheduler.base_url)
            report(run_on_cluster(scheduler.base_url, scheduler.token))
            if scheduler.synthetic:  # no qiskit-aer: the 'sampler' executor made them up
                print("(SYNTHETIC counts from the 'sampler' executor, not a simulation)")
        return
    report(run_on_cluster(base_url, token))


def report(points: list[tuple[int, int]]) -> None:
    for step, ones in points:
        print(f"theta{step}: {ones} of 200 shots gave 1")


if __name__ == "__main__":
    main()
