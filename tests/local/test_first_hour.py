"""The local scheduler as a new user meets it: real physics when it can, honest when it cannot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from asyncjob import AsyncJobClient, JobFailedError, JobNotCompleteError
from asyncjob.local import FaultConfig, LocalScheduler, aer_available

from ..conftest import BELL
from .test_cli import get, spawn, watchdog  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[2]


def test_the_default_executor_is_aer_when_it_is_installed() -> None:
    pytest.importorskip("qiskit_aer")
    scheduler = LocalScheduler()
    assert scheduler.executor.name == "aer"
    assert not scheduler.synthetic


def test_without_aer_the_default_is_the_synthetic_sampler(tmp_path: Path) -> None:
    folder = tmp_path / "no_aer"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text("import sys\nsys.modules['qiskit_aer'] = None\n")
    script = (
        "from asyncjob.local import LocalScheduler, aer_available\n"
        "s = LocalScheduler()\n"
        "print(aer_available(), s.executor.name, s.synthetic)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "sampler", "True"]


async def test_status_bodies_say_when_counts_are_synthetic() -> None:
    async with LocalScheduler(executor="sampler") as sampler:
        async with AsyncJobClient(sampler.base_url, sampler.token, polling_interval=0.02) as c:
            result = await c.run({"bell": BELL})
            response, _ = await c.get_status(result)
    assert response.json()["synthetic"] is True
    if aer_available():
        async with LocalScheduler(executor="aer") as aer:
            async with AsyncJobClient(aer.base_url, aer.token, polling_interval=0.02) as c:
                result = await c.run({"bell": BELL}, shots=200)
                response, _ = await c.get_status(result)
        assert "synthetic" not in response.json()
        assert set(result.results[0]["results"]) <= {"00", "11"}  # type: ignore[index]


async def test_a_failed_job_carries_the_schedulers_reason() -> None:
    faults = FaultConfig(fail_rate=1.0, seed=1)
    async with LocalScheduler(executor="sampler", faults=faults, job_duration=0.01) as server:
        async with AsyncJobClient(server.base_url, server.token, polling_interval=0.02) as c:
            with pytest.raises(JobFailedError) as failed:
                await c.run({"bell": BELL})
            assert failed.value.reason == "injected failure (fail_rate)"
            assert str(failed.value).endswith("ended FAILED (injected failure (fail_rate))")
            with pytest.raises(JobNotCompleteError) as early:
                await c.get_job_results(failed.value.job_id)
    assert early.value.reason == "injected failure (fail_rate)"
    assert "poll until" not in str(early.value)
    assert str(early.value).endswith("(injected failure (fail_rate)): it has no results")


def test_serve_verbose_logs_every_request(
    watchdog: list[subprocess.Popen[str]],  # noqa: F811 - the imported fixture
) -> None:
    proc = spawn("serve", "--port", "0", "--token", "T0k", "--executor", "sampler", "-v")
    watchdog.append(proc)
    assert proc.stdout is not None and proc.stderr is not None
    url = proc.stdout.readline().strip()
    assert get(url + "qpusystem/", "T0k")[0] == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    log = proc.stderr.read()
    assert '"GET /api/qpusystem/ HTTP/1.1" 200' in log


def test_serve_says_on_stderr_when_its_counts_are_synthetic(
    watchdog: list[subprocess.Popen[str]],  # noqa: F811 - the imported fixture
) -> None:
    proc = spawn("serve", "--port", "0", "--token", "T0k", "--executor", "sampler")
    watchdog.append(proc)
    assert proc.stdout is not None and proc.stderr is not None
    url = proc.stdout.readline().strip()
    assert url.endswith("/api/")
    banner = proc.stderr.readline()
    assert "executor 'sampler': counts are SYNTHETIC, not a simulation" in banner
    assert "pip install 'asyncjob-quantum[local]'" in banner
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert proc.stdout.read() == ""  # stdout stays the URL alone: scripts read it


def test_serve_without_executor_simulates_when_aer_is_installed(
    watchdog: list[subprocess.Popen[str]],  # noqa: F811 - the imported fixture
) -> None:
    pytest.importorskip("qiskit_aer")
    proc = spawn("serve", "--port", "0", "--token", "T0k")
    watchdog.append(proc)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    assert proc.stderr.readline().strip() == "asyncjob serve: executor 'aer'"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_no_request_log_without_verbose(
    watchdog: list[subprocess.Popen[str]],  # noqa: F811 - the imported fixture
) -> None:
    proc = spawn("serve", "--port", "0", "--token", "T0k", "--executor", "sampler")
    watchdog.append(proc)
    assert proc.stdout is not None and proc.stderr is not None
    url = proc.stdout.readline().strip()
    request = urllib.request.Request(url + "qpusystem/", headers={"Authorization": "Bearer T0k"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "GET /api/qpusystem/" not in proc.stderr.read()
