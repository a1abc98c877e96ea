"""A new user's first hour with the command line, each command run for real in a subprocess.

Errors are one line that says what to do; nothing prompts before saying what
is missing; numbers that are not physics say so.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from asyncjob.local import FaultConfig, LocalScheduler, ThreadedScheduler

from ..conftest import BELL
from ._terminal import run_in_a_terminal
from .test_cli import TOKEN, cli, env_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[ThreadedScheduler]:
    with LocalScheduler(TOKEN, executor="sampler", job_duration=0.05).run_in_thread() as s:
        yield s


@pytest.fixture
def bell(tmp_path: Path) -> Path:
    path = tmp_path / "bell.qasm"
    path.write_text(BELL)
    return path


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The error of a failed command: exactly one line, no traceback (warnings aside)."""
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    lines = [
        line for line in done.stderr.splitlines() if not line.startswith("asyncjob: warning: ")
    ]
    assert len(lines) == 1, done.stderr
    return lines[0]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def blocked_aer(tmp_path: Path) -> dict[str, str]:
    """An environment in which qiskit and qiskit-aer cannot be imported."""
    folder = tmp_path / "no_aer"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "import sys\nsys.modules['qiskit'] = None\nsys.modules['qiskit_aer'] = None\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOB_")}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(REPO)])
    return env


# -- 1. the package name ------------------------------------------------------------


def test_version_flag_names_the_installed_distribution() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asyncjob", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"asyncjob-quantum {metadata.version('asyncjob-quantum')}"


# -- 2. an executor that is not installed ----------------------------------------------


def test_demo_with_aer_missing_is_one_line_saying_what_to_install(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asyncjob", "demo", "--executor", "aer"],
        env=blocked_aer(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    error = one_line_error(done)
    assert error.startswith("asyncjob: error: the 'aer' executor needs")
    assert "pip install 'asyncjob-quantum[local]'" in error


# -- 4. synthetic counts say so ------------------------------------------------------


def test_demo_without_aer_says_its_counts_are_synthetic(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asyncjob", "demo"],
        env=blocked_aer(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "local scheduler (sampler)" in done.stdout
    assert "qiskit-aer is not installed: pip install -e '.[local]' (in the clone)" in done.stdout
    assert "\nbell  (1000 shots, " in done.stdout
    assert "SYNTHETIC)" in done.stdout  # on every block of the table
    assert done.stdout.rstrip().endswith("to simulate with qiskit-aer")


def test_results_tables_of_a_synthetic_scheduler_say_so(
    server: ThreadedScheduler, bell: Path, tmp_path: Path
) -> None:
    env = env_for(server, tmp_path)
    done = cli("submit", str(bell), "--wait", env=env)
    assert done.returncode == 0, done.stderr
    job_id, first, *_ = done.stdout.splitlines()
    assert first.startswith("bell  (1000 shots, ") and first.endswith(", SYNTHETIC)")
    assert "not a simulation" in done.stdout

    table = cli("results", job_id, env=env)
    assert table.returncode == 0, table.stderr
    assert "SYNTHETIC" in table.stdout.splitlines()[0]
    assert "not a simulation" in table.stdout

    as_json = cli("results", job_id, "--json", env=env)
    assert json.loads(as_json.stdout)["job_id"] == job_id  # stdout stays plain JSON
    assert "SYNTHETIC" in as_json.stderr


def test_results_of_a_simulating_scheduler_are_not_marked(bell: Path, tmp_path: Path) -> None:
    pytest.importorskip("qiskit_aer")
    with LocalScheduler(TOKEN, executor="aer").run_in_thread() as aer:
        done = cli("submit", str(bell), "--wait", env=env_for(aer, tmp_path))
    assert done.returncode == 0, done.stderr
    assert "SYNTHETIC" not in done.stdout + done.stderr
    outcomes = {line.split()[0] for line in done.stdout.splitlines()[2:] if line.strip()}
    assert outcomes <= {"00", "11"}  # a Bell state, simulated


# -- 5. results of a job that will never have any -----------------------------------


def test_results_of_a_failed_job_give_the_schedulers_reason(bell: Path, tmp_path: Path) -> None:
    faults = FaultConfig(fail_rate=1.0, seed=1)
    with LocalScheduler(
        TOKEN, executor="sampler", faults=faults, job_duration=0.01
    ).run_in_thread() as failing:
        env = env_for(failing, tmp_path)
        job_id = cli("submit", str(bell), env=env).stdout.strip()
        failing.wait_for_status(job_id)
        results = cli("results", job_id, env=env)
        waited = cli("wait", job_id, env=env)
        status = cli("status", job_id, env=env)
    assert results.returncode == 3
    assert one_line_error(results) == (
        f"asyncjob: error: job {job_id} ended FAILED (injected failure (fail_rate)): "
        "it has no results"
    )
    assert waited.returncode == 3
    assert "reason: injected failure (fail_rate)" in waited.stderr
    assert status.stdout.strip() == "FAILED"
    assert "reason: injected failure (fail_rate)" in status.stderr


def test_results_of_a_cancelled_job_say_it_ended(
    server: ThreadedScheduler, bell: Path, tmp_path: Path
) -> None:
    env = env_for(server, tmp_path)
    server.scheduler.faults = FaultConfig()
    with LocalScheduler(TOKEN, executor="sampler", job_duration=60).run_in_thread() as slow:
        env = env_for(slow, tmp_path)
        job_id = cli("submit", str(bell), env=env).stdout.strip()
        assert cli("cancel", job_id, env=env).returncode == 0
        results = cli("results", job_id, env=env)
    assert results.returncode == 3
    error = one_line_error(results)
    assert error == f"asyncjob: error: job {job_id} ended CANCELLED: it has no results"
    assert "poll until" not in error


# -- 6, 7. connection errors and a base URL without /api/ ----------------------------


def test_connection_refused_names_host_port_and_cause(bell: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOB_")}
    env.update(ASYNCJOB_TOKEN=TOKEN, ASYNCJOB_CONFIG=str(tmp_path / "none.toml"))
    url = f"http://127.0.0.1:{port}/api/"
    submitted = cli("submit", str(bell), "--base-url", url, env=env)
    error = one_line_error(submitted)
    assert f"POST http://127.0.0.1:{port}/api/job/init/" in error
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in error

    waited = cli("wait", "abc", "--base-url", url, env=env)
    error = one_line_error(waited)
    assert error.startswith(
        f"asyncjob: error: waiting for job abc: cannot connect to 127.0.0.1:{port}"
    )
    assert "watch" not in error


def test_https_to_a_plain_http_server_suggests_http(
    server: ThreadedScheduler, tmp_path: Path
) -> None:
    env = env_for(server, tmp_path)
    https = server.base_url.replace("http://", "https://")
    done = cli("status", "abc", "--base-url", https, env=env)
    error = one_line_error(done)
    assert "TLS handshake with 127.0.0.1:" in error
    assert f"try {server.base_url}" in error


def test_a_base_url_without_api_hints_at_it(
    server: ThreadedScheduler, bell: Path, tmp_path: Path
) -> None:
    env = env_for(server, tmp_path)
    root = server.base_url.removesuffix("api/")
    done = cli("submit", str(bell), "--base-url", root, env=env)
    error = one_line_error(done)
    assert error.startswith("asyncjob: error: HTTP 404 for POST /job/init/")
    assert error.endswith(f"is the base URL missing '/api/'? (got {root})")


# -- 8. configuration -----------------------------------------------------------------


def _answer_prompts(output: bytes) -> bytes | None:
    """Answer a token prompt, should one appear, so that the process ends."""
    return b"\n" if b"token:" in output else None


def test_nothing_configured_says_how_to_set_the_url_without_prompting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOB_")}
    config = tmp_path / "config.toml"
    env["ASYNCJOB_CONFIG"] = str(config)
    code, output = run_in_a_terminal(["status", "abc"], env, _answer_prompts)
    assert "token" not in output.lower()  # no prompt, no talk of a token yet
    assert output.strip() == (
        "asyncjob: error: no scheduler URL configured: pass --base-url URL, set "
        f'ASYNCJOB_BASE_URL, or put base_url = "URL" in {config}'
    )
    assert code == 2


def test_a_token_in_the_config_file_is_refused(
    server: ThreadedScheduler, bell: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'base_url = "{server.base_url}"\ntoken = "{TOKEN}"\n')
    env = env_for(server, tmp_path, ASYNCJOB_CONFIG=str(config))
    done = cli("submit", str(bell), env=env)
    error = one_line_error(done)
    assert done.returncode == 2
    assert f"config file {config} holds a token" in error
    assert 'token_file = "PATH"' in error
    assert TOKEN not in error
    assert server.stats.jobs_created == 0


def test_unknown_config_keys_are_named(server: ThreadedScheduler, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('baseurl = "http://127.0.0.1:1/api/"\n')
    done = cli("status", "abc", env=env_for(server, tmp_path, ASYNCJOB_CONFIG=str(config)))
    assert "unknown key(s) baseurl; accepted: base_url" in one_line_error(done)


def test_plain_http_to_a_remote_host_names_the_flag(
    server: ThreadedScheduler, bell: Path, tmp_path: Path
) -> None:
    env = env_for(server, tmp_path)
    # 0.0.0.0 is not a loopback address, yet connecting to it reaches this machine.
    remote = server.base_url.replace("127.0.0.1", "0.0.0.0")
    refused = cli("submit", str(bell), "--base-url", remote, env=env)
    assert refused.returncode == 2
    error = one_line_error(refused)
    assert "refusing plain http:// to '0.0.0.0'" in error
    assert error.endswith("use https://, or pass --allow-insecure-http")
    assert "allow_insecure_http=True" not in error

    allowed = cli("submit", str(bell), "--base-url", remote, "--allow-insecure-http", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert server.job(allowed.stdout.strip()) is not None


# -- 9. habits --------------------------------------------------------------------------


@pytest.mark.parametrize("top", ["0", "-1", "x"])
def test_top_must_be_a_positive_number(top: str, tmp_path: Path) -> None:
    done = cli("results", "abc", "--top", top, env=dict(os.environ))
    assert done.returncode == 2
    assert "--top: expected a whole number >= 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_top_one_shows_the_rest_in_singular_and_plural(
    server: ThreadedScheduler, bell: Path, tmp_path: Path
) -> None:
    env = env_for(server, tmp_path)
    job_id = cli("submit", str(bell), env=env).stdout.strip()
    server.wait_for_status(job_id)
    counts = json.loads(cli("results", job_id, "--json", env=env).stdout)["results"][0]["results"]
    done = cli("results", job_id, "--top", "1", env=env)
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0]
    assert f", {len(counts)} outcome{'' if len(counts) == 1 else 's'}," in header
    more = len(counts) - 1
    if more:
        assert f"  ... {more} more outcome{'' if more == 1 else 's'}, " in done.stdout
    else:
        assert " more outcome" not in done.stdout


def test_counts_are_pluralised_properly() -> None:
    from asyncjob._display import format_results

    one = format_results([{"label": "zero", "results": {"0": 1}}])
    assert one.splitlines()[0] == "zero  (1 shot, 1 outcome)"
    cut = format_results([{"label": "b", "results": {"00": 5, "01": 3, "11": 1}}], top=2)
    assert cut.splitlines()[0] == "b  (9 shots, 3 outcomes)"
    assert cut.splitlines()[-1] == "  ... 1 more outcome, 1 shot"


def test_a_file_given_twice_is_refused(
    server: ThreadedScheduler, bell: Path, tmp_path: Path
) -> None:
    done = cli("submit", str(bell), str(bell), str(bell), env=env_for(server, tmp_path))
    assert done.returncode == 2
    error = one_line_error(done)
    assert f"{bell} is given more than once" in error
    assert server.stats.jobs_created == 0


def test_jobs_with_a_missing_journal_file_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "journal.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOB_")}
    env["ASYNCJOB_CONFIG"] = str(tmp_path / "none.toml")
    done = cli("jobs", "--journal", str(missing), env=env)
    assert done.returncode == 2
    assert one_line_error(done) == (
        f"asyncjob: error: no journal at {missing}: check the path (nothing was created)"
    )
    assert not missing.exists() and not missing.parent.exists()

    env["ASYNCJOB_JOURNAL"] = str(missing)  # the default place, before any submission
    quiet = cli("jobs", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.strip() == f"no jobs yet (no journal at {missing})"
    assert not missing.parent.exists()


# -- 11. the journal ----------------------------------------------------------------------


def test_jobs_refreshes_statuses_from_the_scheduler(
    server: ThreadedScheduler, bell: Path, tmp_path: Path
) -> None:
    env = env_for(server, tmp_path)
    job_id = cli("submit", str(bell), env=env).stdout.strip()
    server.wait_for_status(job_id)

    offline = cli("jobs", "--offline", env=env)
    assert offline.returncode == 0, offline.stderr
    (row,) = [line for line in offline.stdout.splitlines() if line.startswith(job_id)]
    assert row.split()[1] == "SUBMITTED"  # as recorded when the upload ended

    fresh = cli("jobs", env=env)
    assert fresh.returncode == 0, fresh.stderr
    (row,) = [line for line in fresh.stdout.splitlines() if line.startswith(job_id)]
    assert row.split()[1] == "COMPLETED"
    # ... and recorded, so the journal itself caught up.
    again = cli("jobs", "--offline", env=env)
    assert f"{job_id} COMPLETED" in " ".join(again.stdout.split())
