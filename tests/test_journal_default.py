"""Which runs are journaled by default: real servers yes, a local scheduler's throwaway jobs no."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asyncjob import AsyncJobClient, JobBackend

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def no_journal_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A user who set nothing: the default journal lives in a data directory of the test's."""
    monkeypatch.delenv("ASYNCJOB_JOURNAL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "asyncjob" / "journal.sqlite3"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8999/api/", "http://localhost:1/api/", "http://[::1]:2/api/"]
)
def test_a_loopback_server_is_not_journaled_by_default(no_journal_setting: Path, url: str) -> None:
    assert AsyncJobClient(url, "t").config.journal is None
    assert JobBackend(url, "t").config.journal is None


def test_a_remote_server_is_journaled_by_default(no_journal_setting: Path) -> None:
    client = AsyncJobClient("https://scheduler.example/api/", "t")
    assert client.config.journal == str(no_journal_setting)


def test_a_loopback_server_is_journaled_when_asked(
    no_journal_setting: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = "http://127.0.0.1:8999/api/"
    assert AsyncJobClient(url, "t", journal=True).config.journal == str(no_journal_setting)
    assert AsyncJobClient(url, "t", journal=tmp_path / "j").config.journal == str(tmp_path / "j")
    monkeypatch.setenv("ASYNCJOB_JOURNAL", str(tmp_path / "env.sqlite3"))
    assert AsyncJobClient(url, "t").config.journal == str(tmp_path / "env.sqlite3")


@pytest.mark.parametrize("script", ["blocking_script.py", "async_service.py"])
def test_examples_leave_the_users_journal_alone(tmp_path: Path, script: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOB_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "data").exists(), "the example wrote to the user's data directory"
