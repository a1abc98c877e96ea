"""The job journal: a small SQLite record of every submission, so nothing is lost.

A submission is written down *before* `job/init/` is sent (with the init
`Idempotency-Key`), each chunk body and chunk key before that chunk is sent,
then updated as the job id arrives, chunks are acknowledged, statuses are seen
and results fetched. A process that dies half-way can therefore finish the
submission later, re-sending exactly the same requests, which the server
de-duplicates, or, if it died before every chunk was recorded, cancel it.

Each `Journal` keeps one SQLite connection (WAL mode), shared by its threads
under a lock; a forked child gets a fresh lock and connection (a fork while
another thread is inside a transaction stays unsafe: an SQLite rule). Every operation
is one short transaction, so several processes can share the file. A
connection per operation would cost a WAL checkpoint at every close (~2 ms a
record). Deletions use ``secure_delete=FAST``: freed pages are reused by later
chunks rather than zeroed, which builds that default to ON (Debian's) would do
at ~20 ms per 5,000 circuits on the submission's critical path.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import attrs

from ._paths import data_dir

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
ABANDONED = "abandoned"
"""The submission failed or was cancelled and the job was cancelled."""


def default_journal_path() -> Path | None:
    """`$ASYNCJOB_JOURNAL`, or `journal.sqlite3` in the user's data directory.

    `ASYNCJOB_JOURNAL=off` (or an empty value) disables the journal.
    """
    configured = os.environ.get("ASYNCJOB_JOURNAL")
    if configured is not None:
        return (
            None if configured.strip().lower() in ("", "off", "0", "false") else Path(configured)
        )
    return data_dir() / "journal.sqlite3"


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
        return self.state in (INITIALISING, UPLOADING)


@attrs.frozen
class PendingChunk:
    """A chunk of a submission: its request body, and whether it is the final one."""

    index: int
    chunk_key: str
    body: dict[str, Any]
    final: bool = False
    """The last chunk of the submission: it closes the job, so it is sent after every other."""

    @property
    def wire_body(self) -> dict[str, Any]:
        """The body as sent: `finalized` is the wire form of `final`."""
        return {**self.body, "finalized": "true" if self.final else "false"}


_journals: weakref.WeakSet[Journal] = weakref.WeakSet()
_inherited: list[sqlite3.Connection] = []
"""Connections a forked child inherited: never used there, and never closed (by GC)."""


def _after_fork_in_child() -> None:
    for journal in list(_journals):
        journal._forget_connection()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Journal:
    """Records submissions in a SQLite file; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        with closing(sqlite3.connect(self.path, timeout=30)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
        _journals.add(self)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def close(self) -> None:
        """Close the connection; the next operation opens a new one."""
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()

    def _forget_connection(self) -> None:
        """In a forked child: the parent's lock may be held and its connection is not ours."""
        self._lock = threading.Lock()
        if self._db is not None:
            _inherited.append(self._db)
            self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(
                self.path, timeout=30, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA secure_delete=FAST")
            self._db = db
        return self._db

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One short transaction; only writers take the write lock up front.

        After any error the transaction is rolled back; a connection that cannot
        be brought back out of its transaction is closed, never reused.
        """
        with self._lock:
            db = self._connection()
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
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
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT INTO submissions (key, base_url, labels, options, n_chunks, state,"
                " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    base_url,
                    json.dumps(list(labels)),
                    json.dumps(options),
                    0,
                    INITIALISING,
                    now,
                    now,
                ),
            )

    def chunk(
        self, key: str, index: int, chunk_key: str, body: dict[str, Any], last: bool
    ) -> None:
        """Record chunk `index` before it is sent; the `last` one completes the submission."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO chunks (key, idx, chunk_key, body) VALUES (?, ?, ?, ?)",
                (key, index, chunk_key, json.dumps(body)),
            )
            if last:  # complete only if no earlier chunk failed to be recorded
                db.execute(
                    "UPDATE submissions SET n_chunks = ? WHERE key = ?"
                    " AND (SELECT COUNT(*) FROM chunks WHERE key = ?) = ?",
                    (index + 1, key, key, index + 1),
                )

    def created(self, key: str, job_id: str) -> None:
        """The server answered `job/init/` with `job_id`."""
        with self._transaction() as db:
            db.execute(
                "UPDATE submissions SET job_id = ?, state = ?, updated = ? WHERE key = ?",
                (job_id, UPLOADING, time.time(), key),
            )

    def chunk_sent(self, key: str, index: int) -> None:
        """The server acknowledged chunk `index`."""
        with self._transaction() as db:
            db.execute("UPDATE chunks SET sent = 1 WHERE key = ? AND idx = ?", (key, index))

    def submitted(self, key: str) -> None:
        """Every chunk landed: forget the bodies, keep the record."""
        self._finish(key, SUBMITTED)

    def abandoned(self, key: str) -> None:
        """The submission failed and its job (if any) was cancelled."""
        self._finish(key, ABANDONED)

    def _finish(self, key: str, state: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE submissions SET state = ?, updated = ? WHERE key = ?",
                (state, time.time(), key),
            )
            db.execute("UPDATE chunks SET body = NULL WHERE key = ?", (key,))

    def status(self, base_url: str, job_id: str, status: str) -> None:
        """Record a status seen by polling; the history keeps each change once."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT key, status FROM submissions WHERE base_url = ? AND job_id = ?",
                (base_url, job_id),
            ).fetchone()
            if row is None or row[1] == status:
                return
            db.execute(
                "UPDATE submissions SET status = ?, updated = ? WHERE key = ?",
                (status, now, row[0]),
            )
            db.execute("INSERT INTO history VALUES (?, ?, ?)", (row[0], status, now))

    def results(self, base_url: str, job_id: str, results: list[dict[str, Any]]) -> None:
        """Keep fetched results, unless they are larger than `MAX_RESULTS_BYTES`."""
        items = sum(
            len(r["results"]) if isinstance(r.get("results"), dict) else 1 for r in results
        )
        if items > MAX_RESULT_ITEMS:
            return
        text = json.dumps(results)
        if len(text) > MAX_RESULTS_BYTES:
            return
        with self._transaction() as db:
            db.execute(
                "UPDATE submissions SET results = ?, updated = ?"
                " WHERE base_url = ? AND job_id = ?",
                (text, time.time(), base_url, job_id),
            )

    def find(self, base_url: str, job_id_or_key: str) -> JournalEntry | None:
        """The entry for a job id (or a submission key) on this server, if recorded."""
        with self._transaction(write=False) as db:
            row = db.execute(
                _SELECT + " WHERE s.base_url = ? AND (s.job_id = ? OR s.key = ?)"
                " GROUP BY s.key ORDER BY s.created DESC LIMIT 1",
                (base_url, job_id_or_key, job_id_or_key),
            ).fetchone()
        return None if row is None else _entry(row)

    def entries(self, limit: int = 20, base_url: str | None = None) -> list[JournalEntry]:
        """The most recent submissions, newest first."""
        where, args = ("WHERE s.base_url = ?", (base_url,)) if base_url else ("", ())
        with self._transaction(write=False) as db:
            rows = db.execute(
                _SELECT + f" {where} GROUP BY s.key ORDER BY s.created DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def pending_chunks(self, key: str) -> list[PendingChunk]:
        """Chunks of an interrupted submission that the server has not acknowledged."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT c.idx, c.chunk_key, c.body, s.n_chunks FROM chunks c"
                " JOIN submissions s ON s.key = c.key"
                " WHERE c.key = ? AND c.sent = 0 AND c.body IS NOT NULL ORDER BY c.idx",
                (key,),
            ).fetchall()
        return [
            PendingChunk(idx, ck, json.loads(body), final=idx == n_chunks - 1)
            for idx, ck, body, n_chunks in rows
        ]

    def stored_results(self, base_url: str, job_id: str) -> list[dict[str, Any]] | None:
        """Results kept by `results()`, if any."""
        with self._transaction(write=False) as db:
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
        with self._transaction(write=False) as db:
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
