"""The `asyncjob` command line, driven as a subprocess against the local scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asyncjob import ExecutionResult, JobBackend
from asyncjob.local import LocalScheduler, ThreadedScheduler

from ..conftest import BELL, GHZ3
from ._terminal import run_in_a_terminal

TOKEN = "cli-tests-secret-token-Zq81"


@pytest.fixture
def server() -> Iterator[ThreadedScheduler]:
    with LocalScheduler(TOKEN, job_duration=0.2, seed=3, executor="sampler").run_in_thread() as s:
        yield s


@pytest.fixture
def slow_server() -> Iterator[ThreadedScheduler]:
    with LocalScheduler(TOKEN, job_duration=60, executor="sampler").run_in_thread() as s:
        yield s


@pytest.fixture
def qasm_files(tmp_path: Path) -> list[Path]:
    bell, ghz = tmp_path / "bell.qasm", tmp_path / "ghz.qasm"
    bell.write_text(BELL)
    ghz.write_text(GHZ3)
    return [bell, ghz]


def env_for(server: ThreadedScheduler, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOB_")}
    env.update(
        ASYNCJOB_BASE_URL=server.base_url,
        ASYNCJOB_TOKEN=server.token,
        ASYNCJOB_JOURNAL=str(tmp_path / "journal.sqlite3"),
        ASYNCJOB_CONFIG=str(tmp_path / "none.toml"),
    )
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncjob", *args, "--polling-interval", "0.05"]
        if args[0] in {"submit", "status", "wait", "results", "cancel"}
        else [sys.executable, "-m", "asyncjob", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_submit_wait_results_cancel_jobs(
    server: ThreadedScheduler, qasm_files: list[Path], tmp_path: Path
) -> None:
    env = env_for(server, tmp_path)
    submitted = cli("submit", *map(str, qasm_files), "--shots", "300", "--tag", "t", env=env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert server.job(job_id) is not None

    waited = cli("wait", job_id, env=env)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == "COMPLETED"
    assert "polls" in waited.stderr  # plain progress lines when not on a terminal
    assert "\x1b" not in waited.stderr

    assert cli("status", job_id, env=env).stdout.strip() == "COMPLETED"

    as_json = cli("results", job_id, "--json", env=env)
    data = json.loads(as_json.stdout)
    assert data["job_id"] == job_id
    assert [r["label"] for r in data["results"]] == ["bell", "ghz"]
    assert sum(data["results"][0]["results"].values()) == 300

    table = cli("results", job_id, env=env)
    assert table.stdout.startswith("bell  (300 shots")
    assert "█" in table.stdout

    cancelled = cli("cancel", job_id, env=env)
    assert cancelled.stdout.strip() == "already finished"

    listed = cli("jobs", env=env)
    assert job_id in listed.stdout
    assert "COMPLETED" in listed.stdout
    for result in (submitted, waited, as_json, table, cancelled, listed):
        assert TOKEN not in result.stdout + result.stderr


def test_submit_wait_shows_the_table(
    server: ThreadedScheduler, qasm_files: list[Path], tmp_path: Path
) -> None:
    done = cli("submit", str(qasm_files[0]), "--wait", env=env_for(server, tmp_path))
    assert done.returncode == 0, done.stderr
    job_id, *table = done.stdout.splitlines()
    assert server.job(job_id) is not None
    assert table[0].startswith("bell  (1000 shots")


def test_token_from_file_and_missing_token(
    server: ThreadedScheduler, qasm_files: list[Path], tmp_path: Path
) -> None:
    env = env_for(server, tmp_path)
    del env["ASYNCJOB_TOKEN"]
    missing = cli("submit", str(qasm_files[0]), env=env)
    assert missing.returncode == 2
    assert missing.stderr.startswith("asyncjob: error: no API token: pass --token-file FILE")
    assert missing.stderr.count("\n") == 1
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    ok = cli("submit", str(qasm_files[0]), "--token-file", str(token_file), env=env)
    assert ok.returncode == 0, ok.stderr
    assert TOKEN not in ok.stdout + ok.stderr


def test_config_file(server: ThreadedScheduler, qasm_files: list[Path], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    config = tmp_path / "config.toml"
    config.write_text(f'base_url = "{server.base_url}"\ntoken_file = "{token_file}"\n')
    env = env_for(server, tmp_path, ASYNCJOB_CONFIG=str(config))
    del env["ASYNCJOB_TOKEN"]
    del env["ASYNCJOB_BASE_URL"]
    ok = cli("submit", str(qasm_files[0]), env=env)
    assert ok.returncode == 0, ok.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_CONFIG_HOME is the Linux convention")
def test_config_file_in_the_platform_config_directory(
    server: ThreadedScheduler, qasm_files: list[Path], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    folder = tmp_path / "xdg" / "asyncjob"  # what platformdirs gives on Linux
    folder.mkdir(parents=True)
    (folder / "config.toml").write_text(
        f'base_url = "{server.base_url}"\ntoken_file = "{token_file}"\n'
    )
    env = env_for(server, tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    for name in ("ASYNCJOB_CONFIG", "ASYNCJOB_TOKEN", "ASYNCJOB_BASE_URL"):
        del env[name]
    ok = cli("submit", str(qasm_files[0]), env=env)
    assert ok.returncode == 0, ok.stderr


def test_errors_are_one_line_and_debug_shows_the_traceback(
    server: ThreadedScheduler, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.qasm"
    bad.write_text('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[7];\n')
    env = env_for(server, tmp_path)
    plain = cli("submit", str(bad), env=env)
    assert plain.returncode == 1
    assert plain.stderr.count("\n") == 1
    assert plain.stderr.startswith("asyncjob: error: circuit 'bad'")
    assert "line 4" in plain.stderr
    debug = cli("submit", str(bad), "--debug", env=env)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr
    assert server.stats.jobs_created == 0

    unknown = cli("status", "no-such-job", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("asyncjob: error: HTTP 404")


def test_results_of_a_running_job_say_not_complete(
    slow_server: ThreadedScheduler, qasm_files: list[Path], tmp_path: Path
) -> None:
    env = env_for(slow_server, tmp_path)
    job_id = cli("submit", str(qasm_files[0]), env=env).stdout.strip()
    early = cli("results", job_id, env=env)
    assert early.returncode == 1
    assert "is not complete" in early.stderr


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "asyncjob", *args, "--polling-interval", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _wait_for(condition: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_ctrl_c_during_wait_cancels_only_the_wait(
    slow_server: ThreadedScheduler, qasm_files: list[Path], tmp_path: Path
) -> None:
    env = env_for(slow_server, tmp_path)
    job_id = cli("submit", str(qasm_files[0]), env=env).stdout.strip()
    polls = slow_server.stats.polls
    proc = _start(["wait", job_id], env)
    _wait_for(lambda: slow_server.stats.polls > polls + 2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "goes on" in err
    record = slow_server.job(job_id)
    assert record is not None
    assert record.status in ("PENDING", "RUNNING")


def test_ctrl_c_during_submit_wait_cancels_the_job(
    slow_server: ThreadedScheduler, qasm_files: list[Path], tmp_path: Path
) -> None:
    env = env_for(slow_server, tmp_path)
    proc = _start(["submit", str(qasm_files[0]), "--wait"], env)
    _wait_for(lambda: slow_server.stats.polls > 2)
    proc.send_signal(signal.SIGINT)
    out, _err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    job_id = out.splitlines()[0]
    record = slow_server.job(job_id)
    assert record is not None
    assert record.status == "CANCELLED"


def test_live_progress_on_a_terminal_renders_and_clears(
    slow_server: ThreadedScheduler, qasm_files: list[Path], tmp_path: Path
) -> None:
    env = env_for(slow_server, tmp_path)
    job_id = cli("submit", str(qasm_files[0]), env=env).stdout.strip()
    cancelled = False

    def end_the_job(output: bytes) -> None:
        nonlocal cancelled
        if not cancelled and b"polls" in output:
            # The spinner line is up: end the job so that `wait` finishes.
            with JobBackend(slow_server.base_url, TOKEN, journal=False) as backend:
                backend.cancel_job(ExecutionResult(job_id=job_id))
            cancelled = True

    code, text = run_in_a_terminal(
        ["wait", job_id, "--polling-interval", "0.05"], env, end_the_job, timeout=60
    )
    assert cancelled
    assert code == 3  # the job ended, but not COMPLETED
    assert "⠋" in text  # the spinner was drawn
    assert "\r\x1b[K" in text  # and the line cleared
    last_lines = text.replace("\r\n", "\n").rsplit("\x1b[K", 1)[1]
    assert last_lines.strip() == "CANCELLED"


def test_demo_runs_offline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOB_")}
    done = subprocess.run(
        [sys.executable, "-m", "asyncjob", "demo", "--executor", "sampler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "local scheduler (sampler) at http://127.0.0.1:" in done.stdout
    for label in ("bell", "ghz4", "ry(0pi/4)", "ry(4pi/4)"):
        assert f"\n{label}  (1000 shots" in done.stdout
