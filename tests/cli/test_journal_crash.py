"""A process killed in the middle of a multi-chunk submission loses nothing: resume finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from asyncjob import JobBackend, JobStatus
from asyncjob._journal import Journal
from asyncjob.local import FaultConfig, LocalScheduler

TOKEN = "crash-test-token-Pq3"

SUBMITTER = textwrap.dedent(
    """
    import os, sys
    from asyncjob import JobBackend, Limits
    bell = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; measure q -> c;'
    circuits = {f"c{i:03d}": bell + " // " + os.urandom(600).hex() for i in range(60)}
    with JobBackend(sys.argv[1], sys.argv[2], journal=sys.argv[3],
                    limits=Limits(max_payload_bytes=8000, upload_concurrency=1)) as backend:
        backend.submit_circuits(circuits)
    """
)


def _wait_for(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _kill_when(script: str, base_url: str, journal_path: Path, condition: object) -> None:
    """Run `script` in a process of its own and kill it once `condition()` holds."""
    proc = subprocess.Popen([sys.executable, "-c", script, base_url, TOKEN, str(journal_path)])
    _wait_for(condition)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.mark.parametrize("finish", [True, False])
def test_killed_submission_is_resumed_or_cancelled(tmp_path: Path, finish: bool) -> None:
    journal_path = tmp_path / "journal.sqlite3"
    faults = FaultConfig(latency=0.2, only=("add_circuits",))
    with LocalScheduler(
        TOKEN, faults=faults, job_duration=0.1, executor="sampler"
    ).run_in_thread() as server:
        _kill_when(
            SUBMITTER,
            server.base_url,
            journal_path,
            lambda: server.stats.requests_by_endpoint.get("add_circuits", 0) >= 3,
        )

        (job,) = server.jobs()
        assert not job.finalized
        (entry,) = Journal(journal_path).entries()
        assert entry.interrupted
        assert entry.job_id == job.id
        assert 0 < entry.chunks_sent < entry.n_chunks

        server.faults = FaultConfig()
        with JobBackend(
            server.base_url, TOKEN, journal=journal_path, polling_interval=0.02
        ) as backend:
            handle = backend.resume(job.id, finish=finish)
            status = backend.poll_job_status(handle, loop_until_complete=True, verbose=False)
            if not finish:
                assert status is JobStatus.CANCELLED
                return
            assert status is JobStatus.COMPLETED
            result = backend.get_job_results(handle)

        labels = [f"c{i:03d}" for i in range(60)]
        assert [r["label"] for r in result.results or []] == labels
        (job,) = server.jobs()
        assert job.finalized
        assert sorted(job.labels) == labels
        entry = Journal(journal_path).entries()[0]
        assert not entry.interrupted
        assert entry.status == "COMPLETED"


ONE_CHUNK_SUBMITTER = textwrap.dedent(
    """
    import sys
    from asyncjob import JobBackend
    bell = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; measure q -> c;'
    with JobBackend(sys.argv[1], sys.argv[2], journal=sys.argv[3]) as backend:
        backend.submit_circuits({"a": bell, "b": bell})
    """
)


def test_killed_one_chunk_submission_is_resumed(tmp_path: Path) -> None:
    """A small batch (one chunk, journaled with its submission) is finished by `resume` too.

    Against a plain server (no `first_chunk`): killed after `job/init/`, during the upload.
    """
    journal_path = tmp_path / "journal.sqlite3"
    faults = FaultConfig(latency=5, only=("add_circuits",))
    with LocalScheduler(
        TOKEN, faults=faults, job_duration=0.1, executor="sampler", first_chunk=False
    ).run_in_thread() as server:

        def uploading() -> bool:
            if not server.stats.requests_by_endpoint.get("add_circuits", 0):
                return False
            entries = Journal(journal_path).entries()
            return bool(entries and entries[0].job_id)

        _kill_when(ONE_CHUNK_SUBMITTER, server.base_url, journal_path, uploading)

        (job,) = server.jobs()
        assert not job.finalized
        (entry,) = Journal(journal_path).entries()
        assert entry.interrupted and entry.complete
        assert (entry.job_id, entry.n_chunks, entry.chunks_sent) == (job.id, 1, 0)

        server.faults = FaultConfig()
        with JobBackend(
            server.base_url, TOKEN, journal=journal_path, polling_interval=0.02
        ) as backend:
            handle = backend.resume(job.id)
            status = backend.poll_job_status(handle, loop_until_complete=True, verbose=False)
            assert status is JobStatus.COMPLETED
            result = backend.get_job_results(handle)
        assert [r["label"] for r in result.results or []] == ["a", "b"]
        (entry,) = Journal(journal_path).entries()
        assert not entry.interrupted
        assert (entry.n_chunks, entry.chunks_sent) == (1, 1)


def test_killed_while_init_carries_the_chunk_is_resumed_without_a_second_upload(
    tmp_path: Path,
) -> None:
    """Killed after the server took `job/init/` with its `first_chunk`, before the answer.

    The journal knows the submission but not its job: `resume` (by the submission's
    key) finds the job by the init's key, and re-sends the chunk with its own key,
    which the server knows it applied: one job, its circuits once.
    """
    journal_path = tmp_path / "journal.sqlite3"
    faults = FaultConfig(only=("init",), hang_rate=1.0, hang_when="after", hang_time=30)
    with LocalScheduler(
        TOKEN, faults=faults, job_duration=0.1, executor="sampler"
    ).run_in_thread() as server:
        _kill_when(ONE_CHUNK_SUBMITTER, server.base_url, journal_path, lambda: server.jobs())

        (job,) = server.jobs()
        assert job.finalized and sorted(job.labels) == ["a", "b"]  # taken with the init
        (entry,) = Journal(journal_path).entries()
        assert entry.interrupted and entry.complete and entry.job_id is None

        server.faults = FaultConfig()
        with JobBackend(
            server.base_url, TOKEN, journal=journal_path, polling_interval=0.02
        ) as backend:
            handle = backend.resume(entry.key)
            assert handle.job_id == job.id
            status = backend.poll_job_status(handle, loop_until_complete=True, verbose=False)
            assert status is JobStatus.COMPLETED
            result = backend.get_job_results(handle)
        assert [r["label"] for r in result.results or []] == ["a", "b"]
        assert server.stats.jobs_created == 1
        assert server.stats.requests_by_endpoint.get("add_circuits") == 1  # the resumed one
        assert server.stats.duplicate_chunks_refused == 1  # ... answered, not applied again
        (entry,) = Journal(journal_path).entries()
        assert not entry.interrupted
