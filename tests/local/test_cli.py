"""`asyncjob serve` as a subprocess: URL first, token second, clean exit on signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from asyncjob._cli import _fault_fields, _fault_options, build_parser, main
from asyncjob.local import FaultConfig

REPO = Path(__file__).resolve().parents[2]


def spawn(*args: str, module: str = "asyncjob._cli") -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )


@pytest.fixture
def watchdog() -> Iterator[list[subprocess.Popen[str]]]:
    """Kill any spawned server still alive after 60 s, and at the end of the test."""
    procs: list[subprocess.Popen[str]] = []

    def kill_all() -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    timer = threading.Timer(60, kill_all)
    timer.start()
    yield procs
    timer.cancel()
    kill_all()
    for proc in procs:
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def get(url: str, token: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_url_first_and_exits_cleanly(
    watchdog: list[subprocess.Popen[str]], signum: int
) -> None:
    proc = spawn("serve", "--host", "127.0.0.1", "--port", "0", "--token", "T0k")
    watchdog.append(proc)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith("/api/")
    assert get(url, "T0k")[0] == 200
    assert get(url, "wrong")[0] == 401
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 0
    assert proc.stdout.read() == ""  # nothing else was printed: the token was given


def test_generated_token_on_second_line(watchdog: list[subprocess.Popen[str]]) -> None:
    proc = spawn("serve", "--port", "0", module="asyncjob")
    watchdog.append(proc)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    token_line = proc.stdout.readline().strip()
    assert token_line.startswith("token: ")
    token = token_line.removeprefix("token: ")
    assert len(token) >= 20
    assert get(url + "qpusystem/", token)[0] == 200
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_fault_and_executor_options(watchdog: list[subprocess.Popen[str]]) -> None:
    proc = spawn(
        "serve",
        "--token",
        "t",
        "--executor",
        "sampler",
        "--job-duration",
        "0.01,0.02",
        "--error-rate",
        "1",
        "--fault-endpoints",
        "qpusystem",
        "--seed",
        "3",
    )
    watchdog.append(proc)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert get(url, "t")[0] == 200
    status, body = get(url + "qpusystem/", "t")
    assert status in (502, 503)
    assert b"<html>" in body
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def post(url: str, token: str, body: object) -> int:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize(("flags", "expected"), [((), 200), (("--no-watch",), 404)])
def test_no_watch_serves_without_the_extension(
    watchdog: list[subprocess.Popen[str]], flags: tuple[str, ...], expected: int
) -> None:
    proc = spawn("serve", "--token", "t", *flags)
    watchdog.append(proc)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert post(url + "jobs/watch/", "t", {"job_ids": ["x"], "timeout": 0}) == expected
    proc.terminate()
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0", "--token", "t"], "--allow-remote"),
        (["--host", "0.0.0.0", "--allow-remote"], "--token"),
        (["--host", "192.0.2.10", "--token", "t"], "--allow-remote"),
    ],
)
def test_refuses_non_loopback(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_refuses_non_loopback_in_a_subprocess(watchdog: list[subprocess.Popen[str]]) -> None:
    proc = spawn("serve", "--host", "0.0.0.0", "--token", "t")
    watchdog.append(proc)
    assert proc.wait(timeout=30) == 2
    assert proc.stderr is not None
    assert "--allow-remote" in proc.stderr.read()


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["serve", "--error-rate", "2"], ["serve", "--job-duration", "3,1"], []):
        with pytest.raises(SystemExit) as exc_info:
            main(argv)
        assert exc_info.value.code == 2
    capsys.readouterr()


def test_parser_has_subcommands() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--latency", "0.5", "--rate-limit-rate", "0.1"])
    assert args.command == "serve"
    assert args.latency == 0.5
    assert args.retry_after == 1.0
    assert json.dumps(args.job_duration) == "0.0"


def test_every_fault_field_has_a_generated_flag() -> None:
    argv = ["serve", "--seed", "5", "--latency", "0.1,0.2", "--fault-endpoints", "status,init"]
    argv += ["--error-rate", "0.25", "--error-when", "random", "--hang-when", "after"]
    argv += ["--max-faults", "3", "--slow-body-piece", "4"]
    args = build_parser().parse_args(argv)
    faults = FaultConfig(seed=args.seed, **_fault_options(args))
    assert faults == FaultConfig(
        seed=5,
        latency=(0.1, 0.2),
        only=("status", "init"),
        error_rate=0.25,
        error_when="random",
        hang_when="after",
        max_faults=3,
        slow_body_piece=4,
    )
    assert build_parser().parse_args(["serve"]).hang_time == FaultConfig().hang_time
    flagged = {field.name for field, _, _ in _fault_fields()}
    assert flagged == {field.name for field in attrs.fields(FaultConfig)} - {"seed"}
