"""The journal is off the critical path: a locked journal holds up nothing, writes are grouped.

Another process holds the journal's write lock (`BEGIN EXCLUSIVE`) while the
client submits, polls, is cancelled and cancels: every call goes through, the
journal is reported degraded once, and the records are written once the lock
is released, in one transaction.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from yarl import URL

from asyncjob import AsyncJobClient, ExecutionCancelledError, JobStatus
from asyncjob._journal import SUBMITTED, Journal
from asyncjob.local import LocalScheduler

from .conftest import BASE, BELL, TOKEN, CallbackResult, TurnCounter, aioresponses

HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def locked_by_another_process(path: Path) -> Iterator[subprocess.Popen[str]]:
    """Hold the journal's write lock from another process until the block ends."""
    Journal(path).close()  # the file exists, in WAL mode
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)


def size_on_disk(directory: Path) -> int:
    """Bytes of every file in `directory` (the journal, its log and shared memory)."""
    return sum(p.stat().st_size for p in directory.iterdir())


def degraded_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum("is not being written" in r.getMessage() for r in caplog.records)


async def test_a_journal_locked_by_another_process_holds_up_no_call(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.sqlite3"
    caplog.set_level("WARNING", logger="asyncjob")
    async with LocalScheduler(executor="sampler", job_duration=60) as server:
        client = AsyncJobClient(server.base_url, server.token, journal=path, polling_interval=0.01)
        async with client:
            with locked_by_another_process(path) as holder, anyio.fail_after(20):
                handle = await client.submit_circuits({"a": BELL, "b": BELL})
                assert await client.poll_job_status(handle) is not JobStatus.COMPLETED
                event = threading.Event()
                with pytest.raises(ExecutionCancelledError):
                    await client.poll_job_status(
                        handle,
                        loop_until_complete=True,
                        progress_callback=lambda attempt, status: event.set(),
                        cancellation_event=event,
                    )
                await client.cancel_job(handle)
                # Every call is over, the lock still held: nothing could be written.
                assert holder.poll() is None
                assert client._ctx.writer is not None and client._ctx.writer.degraded is not None
                assert Journal(path).find(server.base_url, handle.job_id or "") is None
            assert degraded_warnings(caplog) == 1
        # The lock is gone: closing the client wrote everything.
        entry = Journal(path).find(server.base_url, handle.job_id or "")
        assert entry is not None
        assert (entry.state, entry.labels) == (SUBMITTED, ("a", "b"))
        assert entry.status in ("PENDING", "SCHEDULED", "RUNNING")  # what the polls saw


async def test_records_are_written_in_groups(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    jobs = 20

    def init(url: URL, **kwargs: Any) -> CallbackResult:
        return CallbackResult(payload={"job_id": kwargs["headers"]["Idempotency-Key"]})

    async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
        writer = client._ctx.writer
        assert writer is not None
        with aioresponses() as m:
            m.post(BASE + "job/init/", callback=init, repeat=True)
            m.post(URL(BASE + "job/").with_path("/api/job/", encoded=True), repeat=True)
            for_any_job = __import__("re").compile(r".*/job/[^/]+/add_circuits/$")
            m.post(for_any_job, payload={}, repeat=True)
            with locked_by_another_process(path):
                async with anyio.create_task_group() as tg:
                    for i in range(jobs):
                        tg.start_soon(client.submit_circuits, {f"c{i}": BELL})
                assert writer.transactions == 0
                # Begin with the only chunk, created, submitted (the final chunk landed).
                assert writer.queued == jobs * 3
    # The lock was released before closing: the backlog went in one transaction (two when
    # an attempt begun on part of it, waiting out its busy timeout, met the release).
    assert writer.written == jobs * 3
    assert writer.transactions <= 2
    entries = Journal(path).entries(limit=100)
    assert len(entries) == jobs
    assert all(e.state == SUBMITTED and e.chunks_sent == e.n_chunks == 1 for e in entries)


async def test_the_journal_stays_small_after_a_large_submission(tmp_path: Path) -> None:
    """Chunk bodies go once the submission is done, and their pages go back to the disk."""
    path = tmp_path / "j.sqlite3"
    circuits = {f"c{i:05d}": BELL + "// " + os.urandom(200).hex() + "\n" for i in range(5_000)}
    async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
        with aioresponses() as m:
            m.post(BASE + "job/init/", payload={"job_id": "j1"})
            m.post(BASE + "job/j1/add_circuits/", payload={}, repeat=True)
            await client.submit_circuits(circuits)
    # Bodies of ~2.5 MB went through it; 2 MB per 10,000 circuits is the budget.
    assert size_on_disk(tmp_path) <= 1_000_000


def test_records_queued_just_before_close_are_written(tmp_path: Path) -> None:
    """An idle writer woken by a record and by `close()` together writes the record first."""
    from asyncjob._journal_records import Begin
    from asyncjob._journal_writer import JournalWriter

    path = tmp_path / "j.sqlite3"
    for attempt in range(20):
        writer = JournalWriter(path)
        writer.record(Begin(f"first{attempt}", BASE, ("a",), {}))
        deadline = time.monotonic() + 20
        while not writer._idle:  # the writer has written it and waits for more
            assert time.monotonic() < deadline
            time.sleep(0.001)
        writer.record(Begin(f"last{attempt}", BASE, ("a",), {}))
        writer.close(timeout=20)
    keys = {e.key for e in Journal(path).entries(limit=100)}
    assert keys == {f"{kind}{n}" for kind in ("first", "last") for n in range(20)}


async def test_the_waiters_of_one_commit_go_on_a_few_per_turn_of_the_loop(tmp_path: Path) -> None:
    """A hundred submissions behind one commit would all build and send requests in one turn."""
    from asyncjob import _journal_writer
    from asyncjob._journal_records import Begin
    from asyncjob._journal_writer import JournalWriter

    writer = JournalWriter(tmp_path / "j.sqlite3")
    counter = TurnCounter()
    resumed_at: list[int] = []

    async def submission(n: int) -> None:
        await writer.durable(writer.record(Begin(f"k{n}", BASE, ("a",), {})))
        resumed_at.append(counter.turns)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(counter.run)
            async with anyio.create_task_group() as waiting:
                for n in range(100):
                    waiting.start_soon(submission, n)
            tg.cancel_scope.cancel()
    finally:
        await anyio.to_thread.run_sync(writer.close)
    assert len(resumed_at) == 100
    # Each commit wakes its own waiters (the hundred records may take more than one).
    per_turn = _journal_writer.WAKE_PER_TURN * writer.transactions
    assert writer.transactions < 100 // _journal_writer.WAKE_PER_TURN
    assert max(Counter(resumed_at).values()) <= per_turn


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_gets_a_writer_of_its_own(tmp_path: Path) -> None:
    """The parent's writer thread does not exist in a child: the child starts its own."""
    from asyncjob._journal_records import Begin
    from asyncjob._journal_writer import JournalWriter

    path = tmp_path / "j.sqlite3"
    writer = JournalWriter(path)
    writer.record(Begin("parent", BASE, ("a",), {}))
    assert writer._thread is not None  # running (or just done) when the fork happens
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            writer.record(Begin("child", BASE, ("b",), {}))
            writer.close(timeout=20)
            code = 0 if writer.written == 1 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writer.close(timeout=20)
    assert {e.key for e in Journal(path).entries()} == {"parent", "child"}


def held_writes(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Every journal write waits for the second event; the first is set once one does."""
    entered, release = threading.Event(), threading.Event()
    real_write = Journal.write

    def held_write(self: Journal, records: Any) -> None:
        entered.set()
        release.wait()
        real_write(self, records)

    monkeypatch.setattr(Journal, "write", held_write)
    return entered, release


def for_every_job(m: Any) -> None:
    """Answer `job/init/` with the init key as job id, and every chunk upload."""

    def init(url: URL, **kwargs: Any) -> CallbackResult:
        return CallbackResult(payload={"job_id": kwargs["headers"]["Idempotency-Key"]})

    m.post(BASE + "job/init/", callback=init, repeat=True)
    m.post(__import__("re").compile(r".*/job/[^/]+/add_circuits/$"), payload={}, repeat=True)


async def test_a_healthy_journal_behind_many_submissions_is_waited_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that keeps making progress is waited for, however long the wait.

    Thousands of concurrent submissions queue thousands of records, and a busy
    loop wakes its waiters late: waits far longer than `BARRIER_WAIT` with a
    healthy writer. Here the first write is held for several `BARRIER_WAIT`s
    while the writer's progress clock stands still (so it never counts as
    stalled): nothing may be skipped, every submission is recorded.
    """
    from asyncjob import _journal_writer

    monkeypatch.setattr(_journal_writer, "BARRIER_WAIT", 0.02)
    caplog.set_level("INFO", logger="asyncjob")
    entered, release = held_writes(monkeypatch)
    path = tmp_path / "j.sqlite3"
    jobs = 50
    async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
        writer = client._ctx.writer
        assert writer is not None
        writer._clock = lambda: 0.0
        with aioresponses() as m, anyio.fail_after(20):
            for_every_job(m)
            async with anyio.create_task_group() as tg:
                for i in range(jobs):
                    tg.start_soon(client.submit_circuits, {f"c{i}": BELL, f"d{i}": BELL})
                await anyio.to_thread.run_sync(entered.wait)
                # The condition under test, not a race: waits outlast BARRIER_WAIT.
                await anyio.sleep(_journal_writer.BARRIER_WAIT * 5)
                assert not m.requests  # every submission still waits for its record
                release.set()
        assert writer.degraded is None
    assert degraded_warnings(caplog) == 0
    entries = Journal(path).entries(limit=jobs + 1)
    assert len(entries) == jobs
    assert all(e.state == SUBMITTED for e in entries)


async def test_a_stuck_write_degrades_the_journal_and_holds_up_nobody(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that makes no progress for `BARRIER_WAIT` releases its waiters, once warned."""
    from asyncjob import _journal_writer
    from asyncjob._journal_records import Begin
    from asyncjob._journal_writer import JournalWriter

    monkeypatch.setattr(_journal_writer, "BARRIER_WAIT", 0.05)
    caplog.set_level("WARNING", logger="asyncjob")
    entered, release = held_writes(monkeypatch)
    writer = JournalWriter(tmp_path / "j.sqlite3")
    try:
        with anyio.fail_after(20):
            await writer.durable(writer.record(Begin("k", BASE, ("a",), {})))
        assert entered.is_set()
        assert writer.degraded is not None and "no progress" in writer.degraded
        assert degraded_warnings(caplog) == 1
    finally:
        release.set()
        await anyio.to_thread.run_sync(writer.close)
    assert [e.key for e in Journal(tmp_path / "j.sqlite3").entries()] == ["k"]


async def test_a_submission_cancelled_before_its_records_are_written_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled at the journal barrier: no request, and the entry is not left to resume."""
    from asyncjob import _journal_writer
    from asyncjob._journal import ABANDONED

    monkeypatch.setattr(_journal_writer, "BARRIER_WAIT", 60.0)  # the write is held, not stuck
    entered, release = held_writes(monkeypatch)
    path = tmp_path / "j.sqlite3"
    async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
        with aioresponses() as m:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(client.submit_circuits, {"a": BELL})
                    await anyio.to_thread.run_sync(entered.wait)
                    tg.cancel_scope.cancel()
            assert not m.requests
        release.set()
    (entry,) = Journal(path).entries()
    assert entry.state == ABANDONED and not entry.interrupted
