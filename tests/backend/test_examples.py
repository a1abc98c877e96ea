"""The examples run as scripts: against a given scheduler, and with one they start themselves."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from asyncjob.local import ThreadedScheduler

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    process = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert process.returncode == 0, process.stderr
    return process.stdout


def test_blocking_script(serve: Callable[..., ThreadedScheduler]) -> None:
    scheduler = serve(job_duration=0.5)  # several polling intervals of 0.1 s: progress shows
    out = run("blocking_script.py", scheduler.base_url, scheduler.token)
    assert "started a local scheduler" not in out
    assert "  poll 1: " in out
    assert " ended COMPLETED" in out
    assert "  bell: {" in out and "  ghz: {" in out
    assert len(scheduler.jobs()) == 2


def test_threads_and_events(scheduler: ThreadedScheduler) -> None:
    env = {
        **os.environ,
        "ASYNCJOB_BASE_URL": scheduler.base_url,
        "ASYNCJOB_TOKEN": scheduler.token,
    }
    out = run("threads_and_events.py", env=env)
    assert "started a local scheduler" not in out
    assert out.count(": stopped after ") == 4
    assert out.rstrip().endswith("pipeline stopped")
    # Whatever the workers were waiting on when the event was set was cancelled.
    assert all(job.status in ("COMPLETED", "CANCELLED") for job in scheduler.jobs())


@pytest.mark.parametrize("script", ["blocking_script.py", "threads_and_events.py"])
def test_examples_start_their_own_scheduler(script: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ASYNCJOB_BASE_URL", "ASYNCJOB_TOKEN")}
    assert "started a local scheduler" in run(script, env=env)


def test_dask_pipeline(scheduler: ThreadedScheduler) -> None:
    pytest.importorskip("distributed")
    out = run("dask_pipeline.py", scheduler.base_url, scheduler.token)
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"theta{i}" for i in range(20)]
    assert all(line.endswith("of 200 shots gave 1") for line in lines)
    jobs = scheduler.jobs()
    assert len(jobs) == 20 and {job.status for job in jobs} == {"COMPLETED"}


def test_dask_pipeline_starts_its_own_scheduler() -> None:
    pytest.importorskip("distributed")
    env = {k: v for k, v in os.environ.items() if k not in ("ASYNCJOB_BASE_URL", "ASYNCJOB_TOKEN")}
    out = run("dask_pipeline.py", env=env)
    assert "started a local scheduler" in out
    assert out.count("of 200 shots gave 1") == 20
