"""The `asyncjob.testing` plugin as a user's own test suite meets it: no marker needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

USER_TESTS = """
import pytest

from asyncjob import AsyncJobClient

BELL = 'OPENQASM 2.0; include "qelib1.inc"; qreg q[2]; creg c[2]; h q[0]; measure q -> c;'


async def test_runs_a_job(local_scheduler):
    async with AsyncJobClient(
        local_scheduler.base_url, local_scheduler.token, polling_interval=0.02
    ) as client:
        result = await client.run({"bell": BELL}, shots=10)
    assert sum(result.results[0]["results"].values()) == 10


def test_blocking(local_scheduler_thread):
    assert local_scheduler_thread.base_url.endswith("/api/")
"""


def run_user_suite(tmp_path: Path, ini: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text(ini)
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_async_tests_need_no_marker_in_strict_mode(tmp_path: Path) -> None:
    """pytest-asyncio's default (strict) mode: the fixture alone makes the test run."""
    done = run_user_suite(tmp_path, "[pytest]\nasyncio_mode = strict\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert "warning" not in done.stdout.lower()


def test_async_tests_run_in_auto_mode_too(tmp_path: Path) -> None:
    done = run_user_suite(
        tmp_path, "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
