"""What the background cleanup of a failed submission says: only what is true.

Real sockets on 127.0.0.1: a server that reads each request and hangs up
without answering (the init's outcome is unknown, so a cleanup looks for the
job), and a port nobody listens on (the init never reached a server).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncjob import AsyncJobClient, ConnectionFailedError

from .conftest import BELL, TOKEN, fast_retry


@pytest.fixture
async def hang_up_url() -> AsyncIterator[str]:
    """A server that reads a request's head and closes the connection without answering."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/api/"


@pytest.fixture
def refused_url() -> str:
    """A loopback port nothing listens on: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/"


def cleanup_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "asyncjob" and r.levelno >= logging.WARNING and "cancelling" in r.getMessage()
    ]


async def test_without_a_journal_no_resume_advice(
    hang_up_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncjob")
    async with AsyncJobClient(hang_up_url, TOKEN, retry=fast_retry(), journal=False) as client:
        assert client.journal is None
        with pytest.raises(ConnectionFailedError):
            await client.submit_circuits({"a": BELL})
    (warning,) = cleanup_warnings(caplog)
    assert "resume()" not in warning
    assert "may be left on the server" in warning


async def test_with_a_journal_resume_advice(
    hang_up_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncjob")
    async with AsyncJobClient(
        hang_up_url, TOKEN, retry=fast_retry(), journal=tmp_path / "j.sqlite3"
    ) as client:
        with pytest.raises(ConnectionFailedError):
            await client.submit_circuits({"a": BELL})
    (warning,) = cleanup_warnings(caplog)
    assert "resume() can finish it from the journal" in warning


@pytest.mark.parametrize("journaled", [False, True])
async def test_a_refused_init_needs_no_cleanup_and_no_warning(
    refused_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, journaled: bool
) -> None:
    caplog.set_level(logging.WARNING, logger="asyncjob")
    journal = tmp_path / "j.sqlite3" if journaled else False
    async with AsyncJobClient(refused_url, TOKEN, retry=fast_retry(), journal=journal) as client:
        with pytest.raises(ConnectionFailedError, match="refused") as info:
            await client.submit_circuits({"a": BELL})
        assert not info.value.request_sent
    assert cleanup_warnings(caplog) == []


async def test_refused_after_an_attempt_that_reached_the_server_still_cleans_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first attempt was read by the server (which then went away): the job may exist."""
    caplog.set_level(logging.WARNING, logger="asyncjob")
    gone = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        server.close()  # no longer listening: the retries are refused
        writer.close()
        gone.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/"
    async with AsyncJobClient(url, TOKEN, retry=fast_retry(), journal=False) as client:
        with pytest.raises(ConnectionFailedError, match="refused") as info:
            await client.submit_circuits({"a": BELL})
        assert gone.is_set() and info.value.request_sent
    (warning,) = cleanup_warnings(caplog)
    assert "may be left on the server" in warning
