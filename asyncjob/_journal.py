"""The job journal: a small SQLite record of every submission, so nothing is lost.

A submission is written down *before* `job/init/` is sent (with the init
`Idempotency-Key`), each chunk body and chunk key before that chunk is sent,
then updated as the job id arrives, chunks are acknowledged, statuses are seen
and results fetched. A process that dies half-way can therefore finish the
submission later, re-sending exactly the same requests, which the server
de-duplicates, or, if it died before every chunk was recorded, cancel it.

The client does not write here itself: it hands typed records
(`_journal_records`) to a `JournalWriter`, which applies many in one
transaction (`Journal.write`). Each `Journal` keeps a write connection and a
read connection (WAL mode: reads never wait for a write), each shared by its
threads under a lock; a forked child gets fresh locks and connections (a fork
while another thread is inside a transaction stays unsafe: an SQLite rule).
Transactions are short, so several processes can share the file. Chunk bodies
are deleted once their submission is finished and the pages they took are
given back (``auto_vacuum=INCREMENTAL``), so the file stays small; deletions use
``secure_delete=FAST`` rather than zeroing every freed page.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any

import attrs

from ._journal_records import (
    Abandoned,
    Begin,
    Cancelling,
    Chunk,
    ChunkSent,
    Created,
    Record,
    Results,
    Status,
    Submitted,
)
from ._paths import default_journal_path

__all__ = ["Journal", "JournalEntry", "default_journal_path"]

MAX_RESULTS_BYTES = 8 * 1024 * 1024
"""Results larger than this (as JSON) are not kept in the journal."""
MAX_RESULT_ITEMS = 100_000
"""Results with more histogram entries than this are not even serialised."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    key TEXT PRIMARY KEY,
    base_url TEXT NOT NULL,
    job_id TEXT,
    labels TEXT NOT NULL,
    options TEXT NOT NULL,
    n_chunks INTEGER NOT NULL,
    state TEXT NOT NULL,
    status TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    results TEXT
);
CREATE INDEX IF NOT EXISTS submissions_by_job ON submissions (job_id);
CREATE TABLE IF NOT EXISTS chunks (
    key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    chunk_key TEXT NOT NULL,
    body TEXT,
    sent INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key, idx)
);
CREATE TABLE IF NOT EXISTS bodies (
    key TEXT NOT NULL,
    idx INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (key, idx)
);
CREATE TABLE IF NOT EXISTS history (
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    at REAL NOT NULL
);
"""

INITIALISING = "initialising"
"""`job/init/` may or may not have reached the server."""
UPLOADING = "uploading"
"""The job exists; some chunks may not have been acknowledged."""
SUBMITTED = "submitted"
"""Every chunk, the final one included, was acknowledged."""
CANCELLING = "cancelling"
"""The submission was cancelled; its job, if any, may still have to be cancelled."""
ABANDONED = "abandoned"
"""The submission failed or was cancelled and the job was cancelled."""
_WAL_LIMIT = 1024 * 1024
"""Bytes the write-ahead log is cut back to after a checkpoint."""
_FREE_PAGES = 256
"""Free pages (1 MiB at 4 KiB a page) kept for later chunks; beyond, they go back to the disk."""


@attrs.frozen
class JournalEntry:
    """One recorded submission."""

    key: str
    base_url: str
    job_id: str | None
    labels: tuple[str, ...]
    options: dict[str, Any]
    n_chunks: int
    """Chunks of the submission; 0 until the last one is recorded."""
    chunks_sent: int
    state: str
    status: str | None
    created: float
    updated: float
    has_results: bool

    @property
    def complete(self) -> bool:
        """True once every chunk of the submission is recorded (it can be finished)."""
        return self.n_chunks > 0

    @property
    def interrupted(self) -> bool:
        """True when the submission never finished: it must be completed or cancelled."""
        return self.state in (INITIALISING, UPLOADING, CANCELLING)

    @property
    def cancelling(self) -> bool:
        """True when the submission was cancelled but its job may not be cancelled yet."""
        return self.state == CANCELLING


@attrs.frozen
class PendingChunk:
    """A chunk of a submission: its request body, and whether it is the final one."""

    index: int
    chunk_key: str
    body: dict[str, Any]
    final: bool = False
    """The last chunk of the submission: it closes the job, so it is sent after every other."""
    ticket: int = 0
    """The journal writer's ticket for its record (0: already in the journal)."""
    data: bytes | None = None
    """`wire_body` as JSON, when it was serialised already (sent as it is)."""

    @property
    def wire_body(self) -> dict[str, Any]:
        """The body as sent: `finalized` is the wire form of `final`."""
        return {**self.body, "finalized": "true" if self.final else "false"}


_journals: weakref.WeakSet[Journal] = weakref.WeakSet()
_inherited: list[sqlite3.Connection] = []
"""Connections a forked child inherited: never used there, and never closed (by GC)."""
_fork_hook: list[bool] = []


def _after_fork_in_child() -> None:
    for journal in list(_journals):
        journal._forget_connection()


def _watch_forks(journal: Journal) -> None:
    """Give `journal` fresh connections in a forked child (hook registered on first use)."""
    _journals.add(journal)
    if not _fork_hook and hasattr(os, "register_at_fork"):
        _fork_hook.append(True)
        os.register_at_fork(after_in_child=_after_fork_in_child)


class Journal:
    """Records submissions in a SQLite file; see the module docstring.

    `busy_timeout` is how long a write waits for another process's transaction
    before failing with "database is locked" (the client's writer uses a short one).
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        with closing(sqlite3.connect(self.path, timeout=busy_timeout)) as db:
            if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
                # Before the first table: freed pages can then be given back to the disk.
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        _watch_forks(self)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def close(self) -> None:
        """Close the connections; the next operation opens new ones."""
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()
        with self._read_lock:
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.close()

    def _forget_connection(self) -> None:
        """In a forked child: the parent's locks may be held and its connections are not ours."""
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        for db in (self._db, self._reader):
            if db is not None:
                _inherited.append(db)
        self._db = self._reader = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA secure_delete=FAST")
        db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, the write lock taken up front.

        After any error the transaction is rolled back; a connection that cannot
        be brought back out of its transaction is closed, never reused.
        """
        with self._lock:
            if self._db is None:
                self._db = self._connect()
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException:
                try:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                if db.in_transaction:
                    self._db = None
                    db.close()
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction on a connection of its own: never behind a write."""
        with self._read_lock:
            if self._reader is None:
                self._reader = self._connect()
            db = self._reader
            db.execute("BEGIN")
            try:
                yield db
            finally:
                if db.in_transaction:
                    db.execute("COMMIT")

    def write(self, records: Iterable[Record]) -> None:
        """Apply `records` in order, in ONE transaction (group commit).

        Once a submission is finished its chunk bodies are deleted and the pages
        they took are given back to the disk, so the file stays small.
        """
        with self._transaction() as db:
            finished = False
            for record in records:
                finished |= _apply(db, record)
            # Small submissions leave their pages to the next chunks; large ones give them back.
            shrink = finished and db.execute("PRAGMA freelist_count").fetchone()[0] > _FREE_PAGES
        if shrink:
            self._shrink()

    def _shrink(self) -> None:
        """Give the pages of deleted chunk bodies back to the disk; cut the log back."""
        with self._lock:
            if self._db is None:
                return
            # Busy: the pages stay free for later chunks, or go at the next shrink.
            with suppress(sqlite3.Error):  # executescript steps the vacuum to its end
                self._db.executescript(
                    "PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);"
                )

    def begin(
        self,
        key: str,
        base_url: str,
        labels: Sequence[str],
        options: dict[str, Any],
    ) -> None:
        """Record a submission before `job/init/` is sent: labels and options.

        Its chunks are recorded by `chunk()`, each before it is sent.
        """
        self.write([Begin(key, base_url, tuple(labels), options)])

    def chunk(
        self, key: str, index: int, chunk_key: str, body: dict[str, Any], last: bool
    ) -> None:
        """Record chunk `index` before it is sent; the `last` one completes the submission."""
        self.write([Chunk(key, index, chunk_key, body, last)])

    def created(self, key: str, job_id: str) -> None:
        """The server answered `job/init/` with `job_id`."""
        self.write([Created(key, job_id)])

    def chunk_sent(self, key: str, index: int) -> None:
        """The server acknowledged chunk `index`."""
        self.write([ChunkSent(key, index)])

    def submitted(self, key: str, job_id: str | None = None) -> None:
        """Every chunk landed: forget the bodies, keep the record (and `job_id`, if given)."""
        self.write([Submitted(key, job_id)])

    def cancelling(self, key: str) -> None:
        """The submission was cancelled; its job is being cancelled (see `Cancelling`)."""
        self.write([Cancelling(key)])

    def status(self, base_url: str, job_id: str, status: str) -> None:
        """Record a status seen by polling; the history keeps each change once."""
        self.write([Status(base_url, job_id, status)])

    def results(self, base_url: str, job_id: str, results: list[dict[str, Any]]) -> None:
        """Keep fetched results, unless they are larger than `MAX_RESULTS_BYTES`."""
        self.write([Results(base_url, job_id, results)])

    def size(self) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        return sum(
            p.stat().st_size
            for p in (self.path, self.path.with_name(self.path.name + "-wal"))
            if p.exists()
        )

    def find(self, base_url: str, job_id_or_key: str) -> JournalEntry | None:
        """The entry for a job id (or a submission key) on this server, if recorded."""
        with self._read() as db:
            row = db.execute(
                _SELECT + " WHERE s.base_url = ? AND (s.job_id = ? OR s.key = ?)"
                " GROUP BY s.key ORDER BY s.created DESC LIMIT 1",
                (base_url, job_id_or_key, job_id_or_key),
            ).fetchone()
        return None if row is None else _entry(row)

    def entries(self, limit: int = 20, base_url: str | None = None) -> list[JournalEntry]:
        """The most recent submissions, newest first."""
        where, args = ("WHERE s.base_url = ?", (base_url,)) if base_url else ("", ())
        with self._read() as db:
            rows = db.execute(
                _SELECT + f" {where} GROUP BY s.key ORDER BY s.created DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def pending_chunks(self, key: str) -> list[PendingChunk]:
        """Chunks of an interrupted submission that the server has not acknowledged."""
        with self._read() as db:
            rows = db.execute(
                "SELECT c.idx, c.chunk_key, COALESCE(b.body, c.body), s.n_chunks FROM chunks c"
                " JOIN submissions s ON s.key = c.key"
                " LEFT JOIN bodies b ON b.key = c.key AND b.idx = c.idx"
                " WHERE c.key = ? AND c.sent = 0"
                " AND COALESCE(b.body, c.body) IS NOT NULL ORDER BY c.idx",
                (key,),
            ).fetchall()
        return [
            PendingChunk(idx, ck, json.loads(body), final=idx == n_chunks - 1)
            for idx, ck, body, n_chunks in rows
        ]

    def stored_results(self, base_url: str, job_id: str) -> list[dict[str, Any]] | None:
        """Results kept by `results()`, if any."""
        with self._read() as db:
            row = db.execute(
                "SELECT results FROM submissions WHERE base_url = ? AND job_id = ?",
                (base_url, job_id),
            ).fetchone()
        if row is None or row[0] is None:
            return None
        stored: list[dict[str, Any]] = json.loads(row[0])
        return stored

    def history(self, key: str) -> list[tuple[str, float]]:
        """Every status change recorded for a submission, oldest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT status, at FROM history WHERE key = ? ORDER BY at", (key,)
            ).fetchall()
        return [(status, at) for status, at in rows]


_SELECT = (
    "SELECT s.key, s.base_url, s.job_id, s.labels, s.options, s.n_chunks,"
    " COALESCE(SUM(c.sent), 0), s.state, s.status, s.created, s.updated,"
    " s.results IS NOT NULL"
    " FROM submissions s LEFT JOIN chunks c ON c.key = s.key"
)


def _entry(row: Sequence[Any]) -> JournalEntry:
    return JournalEntry(
        key=row[0],
        base_url=row[1],
        job_id=row[2],
        labels=tuple(json.loads(row[3])),
        options=json.loads(row[4]),
        n_chunks=row[5],
        chunks_sent=row[6],
        state=row[7],
        status=row[8],
        created=row[9],
        updated=row[10],
        has_results=bool(row[11]),
    )


_JSON_SLICE = 4096
"""Labels serialised by one `json.dumps` call (see `_json_list`)."""


def _json_list(items: Sequence[str]) -> str:
    """`json.dumps(list(items))`, a slice at a time.

    One call on 50,000 labels holds the GIL for about 10 ms, which the event
    loop waits out; a slice holds it for under a millisecond, and the loop
    takes the GIL back between slices.
    """
    if len(items) <= _JSON_SLICE:
        return json.dumps(list(items))
    parts = (
        json.dumps(list(items[start : start + _JSON_SLICE]))[1:-1]
        for start in range(0, len(items), _JSON_SLICE)
    )
    return "[" + ", ".join(parts) + "]"


def _apply(db: sqlite3.Connection, record: Record) -> bool:
    """Write one record; True when it finished a submission (its chunk bodies went)."""
    now = time.time()
    match record:
        case Begin(key, base_url, labels, options, only):
            db.execute(
                "INSERT INTO submissions (key, base_url, labels, options, n_chunks, state,"
                " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    base_url,
                    _json_list(labels),
                    json.dumps(options),
                    0 if only is None else 1,
                    INITIALISING,
                    now,
                    now,
                ),
            )
            if only is not None:
                _insert_chunk(db, only)
        case Chunk(key, index, _, _, last):
            _insert_chunk(db, record)
            if last:  # complete only if no earlier chunk failed to be recorded
                db.execute(
                    "UPDATE submissions SET n_chunks = ? WHERE key = ?"
                    " AND (SELECT COUNT(*) FROM chunks WHERE key = ?) = ?",
                    (index + 1, key, key, index + 1),
                )
        case Created(key, job_id):
            db.execute(
                "UPDATE submissions SET job_id = ?, updated = ?,"
                " state = CASE state WHEN ? THEN ? ELSE state END WHERE key = ?",
                (job_id, now, INITIALISING, UPLOADING, key),
            )
        case ChunkSent(key, index):
            db.execute("UPDATE chunks SET sent = 1 WHERE key = ? AND idx = ?", (key, index))
        case Cancelling(key):
            db.execute(
                "UPDATE submissions SET state = ?, updated = ? WHERE key = ? AND state IN (?, ?)",
                (CANCELLING, now, key, INITIALISING, UPLOADING),
            )
        case Submitted(key) | Abandoned(key):
            state = SUBMITTED if isinstance(record, Submitted) else ABANDONED
            db.execute(
                "UPDATE submissions SET state = ?, updated = ?, job_id = COALESCE(?, job_id)"
                " WHERE key = ?",
                (state, now, record.job_id if isinstance(record, Submitted) else None, key),
            )
            db.execute("DELETE FROM bodies WHERE key = ?", (key,))
            # Bodies kept by an earlier version go; a submission that landed had every
            # chunk acknowledged (the final chunk's `ChunkSent` is not recorded).
            sent = "1" if state == SUBMITTED else "sent"
            db.execute(
                f"UPDATE chunks SET body = NULL, sent = {sent} WHERE key = ?"
                f" AND (body IS NOT NULL OR sent <> {sent})",
                (key,),
            )
            return True
        case Status(base_url, job_id, status):
            row = db.execute(
                "SELECT key, status FROM submissions WHERE base_url = ? AND job_id = ?",
                (base_url, job_id),
            ).fetchone()
            if row is not None and row[1] != status:
                db.execute(
                    "UPDATE submissions SET status = ?, updated = ? WHERE key = ?",
                    (status, now, row[0]),
                )
                db.execute("INSERT INTO history VALUES (?, ?, ?)", (row[0], status, now))
        case Results(base_url, job_id, results):
            text = _results_text(results)
            if text is not None:
                db.execute(
                    "UPDATE submissions SET results = ?, updated = ?"
                    " WHERE base_url = ? AND job_id = ?",
                    (text, now, base_url, job_id),
                )
    return False


def _insert_chunk(db: sqlite3.Connection, chunk: Chunk) -> None:
    db.execute(
        "INSERT INTO chunks (key, idx, chunk_key) VALUES (?, ?, ?)",
        (chunk.key, chunk.index, chunk.chunk_key),
    )
    db.execute(  # a table of their own: marking a chunk sent does not copy its body
        "INSERT INTO bodies (key, idx, body) VALUES (?, ?, ?)",
        (
            chunk.key,
            chunk.index,
            chunk.body if isinstance(chunk.body, str) else json.dumps(chunk.body),
        ),
    )


def _results_text(results: list[dict[str, Any]]) -> str | None:
    """Results as JSON, or None when they are larger than the journal keeps."""
    items = sum(len(r["results"]) if isinstance(r.get("results"), dict) else 1 for r in results)
    if items > MAX_RESULT_ITEMS:
        return None
    text = json.dumps(results)
    return None if len(text) > MAX_RESULTS_BYTES else text
