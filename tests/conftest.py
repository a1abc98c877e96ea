"""Shared fixtures: small circuits and a client configured for fast, deterministic tests."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import signal
import tempfile
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.lowlevel
import pytest

try:
    from aioresponses import CallbackResult, aioresponses
except ImportError:  # the newest-aiohttp session (`nox -s tests_newest_aiohttp`) runs without it
    CallbackResult = aioresponses = None  # type: ignore[assignment,misc]

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


class TurnCounter:
    """Counts the event loop's turns: start `run()` as a task; `turns` is the count so far."""

    def __init__(self) -> None:
        self.turns = 0

    async def run(self) -> None:
        while True:
            self.turns += 1
            await anyio.lowlevel.checkpoint()


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


# -- aioresponses: tests that mock aiohttp with it are skipped where it cannot work ------------

_MOCK_NAMES = {"aioresponses", "CallbackResult"}


def _names(code: types.CodeType) -> set[str]:
    """Global names a code object and the functions nested in it refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _uses_aioresponses(func: Callable[..., Any], seen: set[Callable[..., Any]]) -> bool:
    """True when `func`, or a helper of its own module it calls, refers to aioresponses."""
    inner = getattr(getattr(func, "hypothesis", None), "inner_test", None)
    func = inspect.unwrap(inner or func)
    code = getattr(func, "__code__", None)
    if code is None or func in seen:
        return False
    seen.add(func)
    names = _names(code)
    if names & _MOCK_NAMES:
        return True
    module_globals = getattr(func, "__globals__", {})
    return any(
        _uses_aioresponses(helper, seen)
        for name in names
        if inspect.isfunction(helper := module_globals.get(name))
        and helper.__module__ == func.__module__
    )


@functools.cache
def _aioresponses_works() -> bool:
    """aioresponses is installed and can mock this aiohttp (0.7.9 breaks on aiohttp 3.14)."""
    if aioresponses is None:
        return False
    import aiohttp

    async def probe() -> None:
        with aioresponses() as mocked:
            mocked.get("http://probe.invalid/", payload={"ok": True})
            async with aiohttp.ClientSession() as session:
                async with session.get("http://probe.invalid/") as response:
                    assert await response.json() == {"ok": True}

    try:
        asyncio.run(probe())
    except Exception:
        return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    """Give the Ctrl+C tests' child processes a SIGINT they can receive.

    A shell starts a background job (`pytest &`, a non-interactive script) with
    SIGINT ignored, and children inherit that, so Python in them never raises
    KeyboardInterrupt. A handler (unlike SIG_IGN) is reset to the default on exec.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that mock HTTP with aioresponses; skip them where it cannot work."""
    skip = pytest.mark.skip(reason="aioresponses is missing or cannot mock this aiohttp")
    for item in items:
        func = getattr(item, "function", None)
        if func is not None and _uses_aioresponses(func, set()):
            item.add_marker(pytest.mark.needs_aioresponses)
            if not _aioresponses_works():
                item.add_marker(skip)
