"""The journal writer: the event loop queues typed records, one thread commits them in batches.

Recording is O(1) and never blocks: `record()` appends to an in-memory queue.
A writer thread (started on the first record, ended after a second idle or by
`close()`) commits everything queued in ONE transaction (group commit), with a
short busy timeout; it waits for more records until they pause (1 ms when
someone waits for a record; `LINGER_MAX` at most), so that more records share
the transaction. A journal that is locked or failing is *degraded*: a warning
the first time, its records kept queued and retried with backoff (beyond
`MAX_QUEUED`, status history and results are dropped first), and nobody waits
for it.

The records crash recovery depends on (a submission before its `job/init/`,
a chunk before its upload) are awaited with `durable()`: it returns once the
record is committed (the waiters of one commit go on `WAKE_PER_TURN` per turn of
the event loop), at once when the journal is degraded, and when the writer
has made no progress for `BARRIER_WAIT` while it waited (a stuck write, which
degrades the journal); it is cancellable. A writer that is merely behind (thousands
of records queued, a busy event loop) keeps being waited for: it is healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio

from ._journal import Journal
from ._journal_records import ESSENTIAL, Record

__all__ = ["BARRIER_WAIT", "BUSY_TIMEOUT", "MAX_QUEUED", "JournalWriter"]

logger = logging.getLogger("asyncjob")

BUSY_TIMEOUT = 0.05
"""Seconds a write waits for another process's transaction before the journal is degraded."""
BARRIER_WAIT = 0.25
"""Longest time without progress of the writer that `durable()` accepts: then it degrades."""
MAX_QUEUED = 200_000
"""Records kept while the journal is degraded before status history and results are dropped."""
MAX_BATCH = 5_000
"""Records committed in one transaction at most."""
LINGER, LINGER_WAITED = 0.005, 0.001
"""A pause in arrivals that ends the wait for more records: nobody waits, someone does.

`LINGER_WAITED` only for a record that comes after a quiet spell (no commit in the
last `LINGER_MAX`): records that stream in, e.g. from thousands of submissions
taking turns, share transactions rather than getting one each every few records.
"""
LINGER_MAX = 0.02
"""Longest wait for more records before a commit, while they keep coming."""
WAKE_PER_TURN = 16
"""Waiters of a commit woken per turn of the event loop (see `_set_all`)."""
IDLE = 1.0
"""Seconds without a record after which the writer thread ends (the next record starts one)."""
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
"""Backoff between two attempts to write to a degraded journal."""

_Waiter = tuple[int, asyncio.AbstractEventLoop, anyio.Event]

_writers: weakref.WeakSet[JournalWriter] = weakref.WeakSet()
_fork_hook: list[bool] = []


class JournalWriter:
    """Writes records to the journal at `path` off the event loop; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._open_lock = threading.Lock()
        self._clock: Callable[[], float] = time.monotonic
        """The writer's progress clock (a seam for tests)."""
        self._journal: Journal | None = None
        self._broken = False
        self._warned = False
        self._reset()
        _writers.add(self)
        if not _fork_hook and hasattr(os, "register_at_fork"):
            _fork_hook.append(True)
            os.register_at_fork(after_in_child=_after_fork_in_child)

    def _reset(self) -> None:
        """Empty queue, no thread: at creation, and in a forked child (the parent writes)."""
        self._cond = threading.Condition()
        self._queue: deque[tuple[int, Record]] = deque()
        self._tickets = itertools.count(1)
        self._last = 0
        self._done = 0
        """Every record up to this ticket is written (or given up)."""
        self._waiters: list[_Waiter] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self._writing = False
        self._idle = False
        """The writer waits for a first record (`record()` must wake it)."""
        self._degraded: str | None = None
        self._progress = 0.0
        """When the writer last did something: started a write, applied a record, committed."""
        self._last_commit = -LINGER_MAX
        """When the last transaction was committed (`time.monotonic()`)."""
        self._shed_logged = False
        self.transactions = 0
        """Transactions committed so far (by this process)."""
        self.written = 0
        """Records committed so far (by this process)."""

    def __repr__(self) -> str:
        return f"JournalWriter({str(self.path)!r})"

    @property
    def degraded(self) -> str | None:
        """Why the journal is not being written right now (None: it is)."""
        return self._degraded

    @property
    def queued(self) -> int:
        """Records waiting to be written."""
        return len(self._queue)

    def journal(self) -> Journal | None:
        """The journal, opened on first use; None when disabled for good or locked right now."""
        try:
            return self._open()
        except sqlite3.Error:
            return None

    def _open(self) -> Journal | None:
        """Open the journal once; a file that cannot be opened at all disables journaling.

        A locked file raises (the writer retries); anything else is final: a
        read-only home must not stop anyone from running jobs.
        """
        with self._open_lock:
            if self._journal is None and not self._broken:
                try:
                    self._journal = Journal(self.path, busy_timeout=BUSY_TIMEOUT)
                except (OSError, sqlite3.Error) as exc:
                    if _locked(exc):
                        raise
                    self._broken = True
                    logger.warning(
                        "journal %s cannot be opened (%s); not journaling", self.path, exc
                    )
                    self._give_up()
            return self._journal

    # -- the event loop's side ------------------------------------------------

    def record(self, record: Record) -> int:
        """Queue `record` for writing; returns its ticket for `durable()`. Never blocks."""
        if self._broken:
            return 0
        with self._cond:
            ticket = self._last = next(self._tickets)
            self._queue.append((ticket, record))
            if len(self._queue) > MAX_QUEUED:
                self._shed()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="asyncjob-journal", daemon=True
                )
                self._thread.start()
            elif self._idle or len(self._queue) == MAX_BATCH:
                # Not for every record: a writer lingering for more would wake up
                # thousands of times a second under load, only to linger again.
                self._cond.notify()
        return ticket

    async def durable(self, ticket: int) -> None:
        """Wait until record `ticket` is committed; not at all while the journal is degraded.

        Gives up (and degrades the journal) only when the writer made no progress
        for `BARRIER_WAIT` of this wait: a stuck write, not a long queue or a late
        wake-up of a busy loop. Cancellable.
        """
        if ticket <= self._done or self._degraded is not None or self._broken:
            return
        event = anyio.Event()
        with self._cond:
            if ticket <= self._done or self._degraded is not None or self._broken:
                return
            self._waiters.append((ticket, asyncio.get_running_loop(), event))
            if len(self._waiters) == 1:  # a shorter linger now: someone waits
                # (Not for later waiters: the writer sees the list; each wake-up of
                # its thread costs the event loop a GIL hand-over.)
                self._cond.notify()
        since = self._clock()
        while True:
            with anyio.move_on_after(BARRIER_WAIT):
                await event.wait()
                return
            if ticket <= self._done or self._degraded is not None or self._broken:
                return  # written (or given up) while the loop was busy elsewhere
            if self._clock() - max(since, self._progress) > BARRIER_WAIT:
                self._degrade(f"a write made no progress for {BARRIER_WAIT} s")
                return

    async def flush(self) -> None:
        """Wait for everything recorded so far, as `durable()` does."""
        await self.durable(self._last)

    def settle(self, patience: float = 60.0) -> bool:
        """Block until everything queued is written and the thread is idle (tests, benches)."""
        deadline = time.monotonic() + patience
        with self._cond:
            while self._queue or self._writing:
                if (left := deadline - time.monotonic()) <= 0:
                    return False
                self._cond.wait(min(left, 0.01))
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (one last attempt if degraded), end the thread, close the file.

        Blocking: call it off the event loop. Waits `timeout` at most.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning(
                    "journal %s: still writing after %.0f s; %d records may be lost",
                    self.path,
                    timeout,
                    len(self._queue),
                )
                return
        with self._cond:
            self._closing = False
        journal = self._journal
        if journal is not None:
            journal.close()

    # -- the writer thread ----------------------------------------------------

    def _run(self) -> None:
        backoff = RETRY_FIRST
        while True:
            with self._cond:
                while not self._queue:  # records queued before `close()` are written first
                    if self._closing:
                        self._thread = None
                        return
                    self._idle = True
                    woken = self._cond.wait(IDLE)
                    self._idle = False
                    if not woken and not self._queue:
                        self._thread = None
                        return
                self._linger()
                batch = list(itertools.islice(self._queue, MAX_BATCH))
                self._writing = True
                self._progress = self._clock()
            try:
                journal = self._open()
                if journal is None:
                    self._writing = False
                    continue  # disabled for good: `_give_up` emptied the queue
                journal.write(self._progressing(batch))
            except Exception as exc:  # the writer outlives any failed write, a bad record too
                self._writing = False
                self._degrade(str(exc))
                if self._closing:  # that was the last attempt
                    self._stop_writing()
                    return
                self._pause(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
                continue
            backoff = RETRY_FIRST
            self._committed(batch[-1][0], len(batch))

    def _progressing(self, batch: list[tuple[int, Record]]) -> Iterator[Record]:
        """The batch's records, noting the writer's progress as each one is applied."""
        for _, record in batch:
            self._progress = self._clock()
            yield record
        self._progress = self._clock()

    def _linger(self) -> None:
        """Under the lock: wait for more records until they pause (less when someone waits).

        A lone caller's record is committed 1 ms after it came (`LINGER_WAITED`);
        records that keep coming, from thousands of concurrent submissions,
        share a transaction every `LINGER_MAX` at most (fewer, larger commits),
        and so do records that trickle in just after a commit (a 5 ms pause).
        """
        start = quiet = time.monotonic()
        streaming = start - self._last_commit < LINGER_MAX
        seen = len(self._queue)
        while not self._closing and len(self._queue) < MAX_BATCH:
            now = time.monotonic()
            if len(self._queue) != seen:
                seen, quiet = len(self._queue), now
            pause = LINGER_WAITED if self._waiters and not streaming else LINGER
            end = min(start + LINGER_MAX, quiet + pause)
            if now >= end:
                return
            self._cond.wait(end - now)

    def _committed(self, ticket: int, count: int) -> None:
        with self._cond:
            self._writing = False
            self._cond.notify_all()
            self._progress = self._clock()
            self.transactions += 1
            self.written += count
            self._last_commit = time.monotonic()
            while self._queue and self._queue[0][0] <= ticket:
                self._queue.popleft()
            self._done = max(self._done, ticket)
            if self._degraded is not None:
                logger.info("journal %s: writing again", self.path)
                self._degraded = None
            ready = [w for w in self._waiters if w[0] <= self._done]
            self._waiters = [w for w in self._waiters if w[0] > self._done]
        _wake(ready)

    def _pause(self, backoff: float) -> None:
        """Wait before the next attempt; `close()` cuts the wait short for a last one."""
        deadline = time.monotonic() + backoff
        with self._cond:
            while not self._closing and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)

    def _stop_writing(self) -> None:
        """Closing, and the journal still cannot be written: give up what is queued."""
        with self._cond:
            self._thread = None
            lost = len(self._queue)
        if lost:
            logger.warning(
                "journal %s: %d records could not be written (%s)", self.path, lost, self._degraded
            )
        self._give_up()

    # -- either side ----------------------------------------------------------

    def _degrade(self, reason: str) -> None:
        """Stop anyone waiting for the journal; log it (a warning the first time)."""
        with self._cond:
            first = self._degraded is None
            self._degraded = reason
            ready, self._waiters = self._waiters, []
        if first:  # a warning the first time only: under load, slow writes come and go
            logger.log(
                logging.INFO if self._warned else logging.WARNING,
                "journal %s is not being written (%s); skipped, retried in the background",
                self.path,
                reason,
            )
            self._warned = True
        _wake(ready)

    def _give_up(self) -> None:
        """Forget what is queued and release every waiter."""
        with self._cond:
            self._queue.clear()
            self._done = self._last
            ready, self._waiters = self._waiters, []
        _wake(ready)

    def _shed(self) -> None:
        """Too much queued (called under the lock): drop status history and results."""
        before = len(self._queue)
        self._queue = deque(item for item in self._queue if isinstance(item[1], ESSENTIAL))
        if not self._shed_logged:
            self._shed_logged = True
            logger.warning(
                "journal %s: %d records queued; status history and results are dropped",
                self.path,
                before,
            )


def _wake(waiters: list[_Waiter]) -> None:
    """Set each waiter's event on its own loop (one call per loop)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[anyio.Event]] = {}
    for _, loop, event in waiters:
        by_loop.setdefault(loop, []).append(event)
    for loop, events in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_set_all, events)


def _set_all(events: list[anyio.Event], start: int = 0) -> None:
    """Set the events from `start`, `WAKE_PER_TURN` per turn of the loop.

    Each wakes a submission that goes on at once to build and send its request:
    a hundred of them woken in one turn would run in one next turn, together.
    """
    end = start + WAKE_PER_TURN
    for event in events[start:end]:
        event.set()
    if end < len(events):
        asyncio.get_running_loop().call_soon(_set_all, events, end)


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def _after_fork_in_child() -> None:
    for writer in list(_writers):
        writer._open_lock = threading.Lock()
        writer._reset()
