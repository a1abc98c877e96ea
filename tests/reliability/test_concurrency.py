"""Concurrent first use of one client: its journal is opened once, not once per task.

Found under load by the suite: `as_completed` (and concurrent submissions) asked
for the journal from many tasks at once, each opened its own, and switching one
SQLite file to WAL from two connections at once fails "database is locked".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncjob import AsyncJobClient, JobStatus, PollingPolicy
from asyncjob import _journal_writer as writer_module
from asyncjob.local import LocalScheduler

from ..conftest import BELL
from .conftest import TOKEN


async def test_the_journal_is_opened_once_by_concurrent_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Any] = []

    class CountingJournal(writer_module.Journal):
        def __init__(self, path: Any, **options: Any) -> None:
            opened.append(path)
            super().__init__(path, **options)

    monkeypatch.setattr(writer_module, "Journal", CountingJournal)
    client = AsyncJobClient("http://127.0.0.1:1/api/", TOKEN, journal=tmp_path / "j.sqlite3")
    journals: list[Any] = []

    async def use() -> None:  # each opens it from a worker thread of its own
        journals.append(await client._ctx.from_journal(lambda journal: journal))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(use)
    assert len(opened) == 1
    assert len({id(j) for j in journals}) == 1 and journals[0] is client.journal


async def test_as_completed_on_a_fresh_journal(tmp_path: Path) -> None:
    async with LocalScheduler(token=TOKEN, job_duration=0.01, executor="sampler") as scheduler:
        async with AsyncJobClient(
            scheduler.base_url,
            TOKEN,
            polling=PollingPolicy(interval=0.01),
            journal=tmp_path / "fresh.sqlite3",
        ) as client:
            with anyio.fail_after(60):
                handles = [await client.submit_circuits({f"c{i}": BELL}) for i in range(20)]
                # Another client, on another fresh file, first used by 20 tasks at once.
                async with AsyncJobClient(
                    scheduler.base_url,
                    TOKEN,
                    polling=PollingPolicy(interval=0.01),
                    journal=tmp_path / "other.sqlite3",
                ) as other:
                    async with other.as_completed(handles) as outcomes:
                        got = [outcome async for outcome in outcomes]
    assert [o.error for o in got] == [None] * 20
    assert all(o.status is JobStatus.COMPLETED and o.result is not None for o in got)
