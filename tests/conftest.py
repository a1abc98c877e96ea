"""Shared fixtures: small circuits and a client configured for fast, deterministic tests."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator

import pytest

# Tests (and the subprocesses they start) never write to the user's own journal.
os.environ["ASYNCJOB_JOURNAL"] = os.path.join(tempfile.mkdtemp(prefix="asyncjob-"), "j.sqlite3")

from asyncjob import AsyncJobClient, PollingPolicy, RetryPolicy

BASE = "http://127.0.0.1:8999/api/"
TOKEN = "s3cret-token-value"

BELL = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""

GHZ3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[3] q;
bit[3] c;
h q[0];
cx q[0], q[1];
cx q[1], q[2];
c = measure q;
"""


def fast_retry() -> RetryPolicy:
    """Retries without waiting, so retry tests run in microseconds."""
    return RetryPolicy(attempts=4, initial=0.001, max_backoff=0.001, jitter=False)


@pytest.fixture
async def client() -> AsyncIterator[AsyncJobClient]:
    async with AsyncJobClient(
        BASE,
        TOKEN,
        retry=fast_retry(),
        # The plain per-job status protocol; tests of the jobs/watch/ extension say so.
        polling=PollingPolicy(interval=0.001, watch=False),
        timeout=2.0,
    ) as c:
        yield c


@pytest.fixture(autouse=True)
def _own_journal(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test gets a journal of its own, so job ids recorded by one never meet another."""
    path = tmp_path_factory.mktemp("journal") / "journal.sqlite3"
    monkeypatch.setenv("ASYNCJOB_JOURNAL", str(path))
