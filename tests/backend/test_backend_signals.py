"""Ctrl+C and interpreter exit, with real signals in real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asyncjob import JobBackend
from asyncjob.local import FaultConfig, ThreadedScheduler

from ._support import BELL, hangs, wait_until

SCRIPTS = Path(__file__).parent / "scripts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]


@pytest.fixture
def job_id(slow_backend: JobBackend) -> str:
    """A job that runs until cancelled."""
    return str(slow_backend.submit_circuits({"bell": BELL}).job_id)


def start(script: str, scheduler: ThreadedScheduler, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPTS / script), scheduler.base_url, scheduler.token, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def poller(slow_scheduler: ThreadedScheduler, job_id: str) -> Iterator[subprocess.Popen[str]]:
    """`interrupted.py` polling `job_id`, once it has printed "polling"."""
    process = start("interrupted.py", slow_scheduler, "poll", job_id)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "polling\n"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_first_ctrl_c_cancels_the_wait_and_the_job(
    poller: subprocess.Popen[str], slow_scheduler: ThreadedScheduler, job_id: str
) -> None:
    os.kill(poller.pid, signal.SIGINT)
    out, err = poller.communicate(timeout=30)
    assert poller.returncode == 3, err
    assert out.startswith("cancelled:")
    assert "Ctrl+C" in out
    assert slow_scheduler.job(job_id).status == "CANCELLED"  # type: ignore[union-attr]


def test_second_ctrl_c_raises_keyboard_interrupt_at_once(
    poller: subprocess.Popen[str], slow_scheduler: ThreadedScheduler, job_id: str
) -> None:
    # The best-effort cancel that follows the first Ctrl+C hangs on the server...
    slow_scheduler.faults = FaultConfig(hang_rate=1.0, only=("cancel",))
    os.kill(poller.pid, signal.SIGINT)
    wait_until(lambda: hangs(slow_scheduler) >= 1)
    # ...and a second Ctrl+C does not wait for it.
    sent = time.monotonic()
    os.kill(poller.pid, signal.SIGINT)
    out, err = poller.communicate(timeout=30)
    assert time.monotonic() - sent < 5.0
    assert poller.returncode == 4, err
    assert out == "keyboard interrupt\n"
    assert slow_scheduler.job(job_id).status == "RUNNING"  # type: ignore[union-attr]


def test_ctrl_c_during_upload_cancels_the_created_job(
    serve: Callable[..., ThreadedScheduler],
) -> None:
    """A plain server (no `first_chunk`): the upload after `job/init/` hangs."""
    slow_scheduler = serve(job_duration=3600.0, first_chunk=False)
    slow_scheduler.faults = FaultConfig(hang_rate=1.0, only=("add_circuits",))
    process = start("interrupted.py", slow_scheduler, "submit")
    try:
        wait_until(lambda: hangs(slow_scheduler) >= 1)
        os.kill(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 4, err
    assert out == "keyboard interrupt\n"
    # The KeyboardInterrupt went on only after the job had been cancelled.
    [job] = slow_scheduler.jobs()
    assert job.status == "CANCELLED"
    assert not job.finalized


def test_unclosed_backends_do_not_hold_up_exit(
    slow_scheduler: ThreadedScheduler, job_id: str
) -> None:
    process = start("exit_without_close.py", slow_scheduler, job_id)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    lines = out.splitlines()
    assert lines[:3] == [
        "loop threads before gc: 1",
        "loop threads after gc: 0",
        "exiting with a call in flight",
    ]
    assert "Traceback" not in err
