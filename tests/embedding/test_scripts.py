"""Scripts run as users write them, each in a fresh interpreter, against a local scheduler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asyncjob.local import ThreadedScheduler

SCRIPTS = Path(__file__).parent / "scripts"
WAIT = 120.0


def _run(
    scheduler: ThreadedScheduler, script: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SCRIPT_URL=scheduler.base_url, SCRIPT_TOKEN=scheduler.token)
    return subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def test_script_without_main_guard_submits_once(scheduler: ThreadedScheduler) -> None:
    """Finding 1 of issue 13: validating >64 full-parser circuits started a spawn pool,
    which re-ran the script (3-4 `job/init/` instead of 1, a traceback on stderr)."""
    done = _run(scheduler, "no_main_guard.py")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (job,) = scheduler.jobs()
    assert done.stdout.strip() == job.id
    assert len(job.labels) == 70 and job.finalized
    assert scheduler.stats.requests_by_endpoint.get("init", 0) == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("child_uses_it", [False, True])
def test_forked_child_exiting_normally_with_an_inherited_backend(
    scheduler: ThreadedScheduler, child_uses_it: bool
) -> None:
    """The child's exit (atexit, interpreter shutdown) neither waits on the parent's loop
    thread nor closes the parent's connections: the parent goes on with the backend."""
    done = _run(scheduler, "fork_then_exit.py", *(["use"] if child_uses_it else []))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.strip() == "child exit status 0"
    labels = sorted(label for job in scheduler.jobs() for label in job.labels)
    expected = ["parent-after", "parent-after-2", "parent-before"]
    assert labels == sorted([*expected, *(["child"] if child_uses_it else [])])
    assert {job.status for job in scheduler.jobs()} == {"COMPLETED"}
