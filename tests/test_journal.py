"""The job journal: records, concurrent writers, and re-attaching to interrupted submissions."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from yarl import URL

from asyncjob import AsyncJobClient, ExecutionResult, Limits, ResumeError
from asyncjob._journal import (
    ABANDONED,
    SUBMITTED,
    UPLOADING,
    Journal,
    _json_list,
    default_journal_path,
)

from .conftest import BASE, BELL, TOKEN, CallbackResult, aioresponses, fast_retry

INIT = BASE + "job/init/"
ADD = BASE + "job/j1/add_circuits/"
CANCEL = BASE + "job/j1/cancel/"


def begin_with_chunks(
    journal: Journal, key: str, labels: list[str], options: dict[str, Any], n: int
) -> None:
    """A submission recorded with `n` chunks, the last one completing it."""
    journal.begin(key, BASE, labels, options)
    for i in range(n):
        body = {"circuits": {f"c{i}": "x"}, "finalized": "false"}
        journal.chunk(key, i, f"ck{i}", body, last=i == n - 1)


def test_default_path_honours_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCJOB_JOURNAL", "off")
    assert default_journal_path() is None
    monkeypatch.setenv("ASYNCJOB_JOURNAL", "/tmp/x.sqlite3")
    assert default_journal_path() == Path("/tmp/x.sqlite3")
    monkeypatch.delenv("ASYNCJOB_JOURNAL")
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert default_journal_path() == Path("/data/asyncjob/journal.sqlite3")


def test_lifecycle_is_recorded(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    begin_with_chunks(journal, "k1", ["a", "b"], {"init": {"tag": "t"}}, 2)
    entry = journal.find(BASE, "k1")
    assert entry is not None
    assert entry.interrupted
    assert entry.job_id is None
    journal.created("k1", "j1")
    journal.chunk_sent("k1", 0)
    entry = journal.find(BASE, "j1")
    assert entry is not None
    assert (entry.state, entry.chunks_sent, entry.labels) == (UPLOADING, 1, ("a", "b"))
    assert [c.index for c in journal.pending_chunks("k1")] == [1]
    journal.submitted("k1")
    for status in ("PENDING", "PENDING", "RUNNING", "COMPLETED"):
        journal.status(BASE, "j1", status)
    journal.results(BASE, "j1", [{"label": "a", "results": {"0": 1}}])
    entry = journal.find(BASE, "j1")
    assert entry is not None
    assert (entry.state, entry.status, entry.has_results) == (SUBMITTED, "COMPLETED", True)
    assert not entry.interrupted
    assert [s for s, _ in journal.history("k1")] == ["PENDING", "RUNNING", "COMPLETED"]
    assert journal.pending_chunks("k1") == []
    assert journal.stored_results(BASE, "j1") == [{"label": "a", "results": {"0": 1}}]
    assert journal.find("https://other.test/", "j1") is None


def test_token_is_never_stored(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"

    async def main() -> None:
        async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
            with aioresponses() as m:
                m.post(INIT, payload={"job_id": "j1"})
                m.post(ADD, payload={})
                await client.submit_circuits({"a": BELL})

    anyio.run(main)
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"j1" in data
    assert TOKEN.encode() not in data


def _write_many(path: str, prefix: str, n: int) -> None:
    journal = Journal(path)
    for i in range(n):
        key = f"{prefix}-{i}"
        begin_with_chunks(journal, key, ["a"], {}, 1)
        journal.created(key, key)
        journal.status(BASE, key, "RUNNING")
        journal.submitted(key)


def test_concurrent_threads_and_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite3")
    Journal(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(path, f"p{i}", 25)) for i in range(3)]
    threads = [threading.Thread(target=_write_many, args=(path, f"t{i}", 25)) for i in range(4)]
    for worker in [*procs, *threads]:
        worker.start()
    for thread in threads:
        thread.join()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    entries = Journal(path).entries(limit=1000)
    assert len(entries) == 175
    assert all(e.state == SUBMITTED and e.status == "RUNNING" for e in entries)


def test_one_journal_shared_by_threads_and_reopened(tmp_path: Path) -> None:
    """One connection serves every thread; close() leads to a fresh one."""
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    threads = [
        threading.Thread(target=lambda i=i: _write_with(journal, f"t{i}", 25)) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    _write_with(journal, "after-close", 1)
    entries = Journal(path).entries(limit=1000)
    assert len(entries) == 101
    assert all(e.state == SUBMITTED for e in entries)
    assert journal.pending_chunks("t0-0") == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_while_the_lock_is_held_gets_its_own_lock_and_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    _write_with(journal, "parent", 1)
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:  # another thread holds the journal's lock when the fork happens
        with journal._lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _write_with(journal, "child", 1)
            code = 0
        finally:
            os._exit(code)
    release.set()
    holder.join()
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the journal")
    assert os.waitstatus_to_exitcode(done[1]) == 0
    _write_with(journal, "parent-after-fork", 1)
    keys = {e.key for e in Journal(path).entries(limit=10)}
    assert keys == {"parent-0", "child-0", "parent-after-fork-0"}


def _write_with(journal: Journal, prefix: str, n: int) -> None:
    for i in range(n):
        key = f"{prefix}-{i}"
        begin_with_chunks(journal, key, ["a"], {}, 1)
        journal.created(key, key)
        journal.submitted(key)


async def test_client_records_and_resume_restores_labels(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
        with aioresponses() as m:
            m.post(INIT, payload={"job_id": "j1"})
            m.post(ADD, payload={})
            await client.submit_circuits({"z": BELL, "a": BELL}, tag="mine")
    entry = Journal(path).find(BASE, "j1")
    assert entry is not None
    assert entry.labels == ("z", "a")
    assert entry.options["init"]["tag"] == "mine"
    assert entry.state == SUBMITTED

    async with AsyncJobClient(BASE, TOKEN, journal=path) as fresh:
        handle = await fresh.resume("j1")
        assert handle == ExecutionResult(job_id="j1")
        with aioresponses() as m:
            m.get(
                BASE + "job/j1/resultsV2/?limit=100&offset=0",
                payload={
                    "next": None,
                    "results": [
                        {"label": "a", "results": {"v": 1}},
                        {"label": "z", "results": {"v": 2}},
                    ],
                },
            )
            result = await fresh.get_job_results(handle)
    assert [r["label"] for r in result.results or []] == ["z", "a"]


def test_submitted_sets_the_job_id_only_when_it_carries_one(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    begin_with_chunks(journal, "k1", ["a"], {"init": {}}, 1)
    journal.submitted("k1", "j1")  # landed with its job/init/: no `Created` before
    begin_with_chunks(journal, "k2", ["b"], {"init": {}}, 1)
    journal.created("k2", "j2")
    journal.submitted("k2")  # the id came with `Created`: kept
    for key, job_id in (("k1", "j1"), ("k2", "j2")):
        entry = journal.find(BASE, key)
        assert entry is not None
        assert (entry.job_id, entry.state) == (job_id, SUBMITTED)


async def test_a_chunk_landed_with_the_init_is_one_journal_record_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Created` and `Submitted` go as one record: the job id and the end, in one write."""
    from asyncjob._journal_writer import JournalWriter

    recorded: list[object] = []
    record = JournalWriter.record

    def keeping(self: JournalWriter, item: Any) -> int:
        recorded.append(item)
        return record(self, item)

    monkeypatch.setattr(JournalWriter, "record", keeping)
    path = tmp_path / "j.sqlite3"
    async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
        with aioresponses() as m:
            m.post(INIT, payload={"job_id": "j1", "first_chunk": {"job_id": "j1"}})
            await client.submit_circuits({"bell": BELL})
    assert [type(r).__name__ for r in recorded] == ["Begin", "Submitted"]
    entry = Journal(path).find(BASE, "j1")
    assert entry is not None
    assert (entry.job_id, entry.state, entry.complete) == ("j1", SUBMITTED, True)
    assert entry.chunks_sent == entry.n_chunks == 1


async def test_resume_unknown_job_is_lookup_error(tmp_path: Path) -> None:
    async with AsyncJobClient(BASE, TOKEN, journal=tmp_path / "j.sqlite3") as client:
        with pytest.raises(ResumeError, match="not in the journal") as info:
            await client.resume("nope")
        assert isinstance(info.value, LookupError)
    async with AsyncJobClient(BASE, TOKEN, journal=False) as client:
        assert client.journal is None
        with pytest.raises(ResumeError, match="enabled journal") as info:
            await client.resume("nope")
        assert isinstance(info.value, LookupError)


async def _interrupted_submission(path: Path) -> list[dict[str, Any]]:
    """Submit 3 chunks where the connection dies after the first one landed."""
    circuits = {f"c{i}": BELL + "// " + os.urandom(300).hex() + "\n" for i in range(9)}
    sent: list[dict[str, Any]] = []

    def on_chunk(url: URL, **kwargs: Any) -> CallbackResult:
        sent.append(
            {"body": json.loads(kwargs["data"]), "key": kwargs["headers"]["Idempotency-Key"]}
        )
        if len(sent) == 1:
            return CallbackResult(payload={})
        raise aiohttp.ServerDisconnectedError()

    async with AsyncJobClient(
        BASE,
        TOKEN,
        journal=path,
        retry=fast_retry(),
        limits=Limits(max_payload_bytes=2000, upload_concurrency=1),
    ) as client:
        with aioresponses() as m:
            m.post(INIT, payload={"job_id": "j1"})
            m.post(ADD, callback=on_chunk, repeat=True)
            # the cancel cannot get through either: the job stays un-finalized
            with pytest.raises(Exception, match="connection"):
                await client.submit_circuits(circuits)
    return sent


async def test_resume_finishes_an_interrupted_submission(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    sent = await _interrupted_submission(path)
    entry = Journal(path).find(BASE, "j1")
    assert entry is not None
    assert entry.interrupted
    assert entry.chunks_sent == 1
    assert entry.n_chunks >= 3

    resent: list[dict[str, Any]] = []

    def on_chunk(url: URL, **kwargs: Any) -> CallbackResult:
        resent.append(
            {"body": json.loads(kwargs["data"]), "key": kwargs["headers"]["Idempotency-Key"]}
        )
        return CallbackResult(payload={})

    async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
        with aioresponses() as m:
            m.post(ADD, callback=on_chunk, repeat=True)
            handle = await client.resume("j1")
    assert handle.job_id == "j1"
    first_labels = set(sent[0]["body"]["circuits"])
    labels = [label for r in resent for label in r["body"]["circuits"]]
    assert not first_labels & set(labels)
    assert len(labels) + len(first_labels) == 9
    assert [r["body"]["finalized"] for r in resent][-1] == "true"
    original_keys = {s["key"] for s in sent}
    assert resent[0]["key"] in original_keys  # the same chunk is re-sent with the same key
    entry = Journal(path).find(BASE, "j1")
    assert entry is not None
    assert entry.state == SUBMITTED


async def test_resume_can_cancel_an_interrupted_submission(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    await _interrupted_submission(path)
    async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
        with aioresponses() as m:
            m.post(CANCEL, payload={"status": "cancelled"})
            await client.resume("j1", finish=False)
            assert len(m.requests[("POST", URL(CANCEL))]) == 1
    entry = Journal(path).find(BASE, "j1")
    assert entry is not None
    assert entry.state == ABANDONED


async def test_results_are_journaled_only_when_asked(tmp_path: Path) -> None:
    page = {"next": None, "results": [{"label": "a", "results": {"v": 1}}]}
    for keep in (False, True):
        path = tmp_path / f"j{keep}.sqlite3"
        async with AsyncJobClient(BASE, TOKEN, journal=path, journal_results=keep) as client:
            with aioresponses() as m:
                m.post(INIT, payload={"job_id": "j1"})
                m.post(ADD, payload={})
                m.get(BASE + "job/j1/resultsV2/?limit=100&offset=0", payload=page)
                handle = await client.submit_circuits({"a": BELL})
                await client.get_job_results(handle)
        stored = Journal(path).stored_results(BASE, "j1")
        assert stored == ([{"label": "a", "results": {"v": 1}}] if keep else None)


async def test_a_submission_recorded_in_part_is_cancelled_not_finished(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    journal.begin("k1", BASE, ["a", "b"], {"init": {"tag": "t"}, "ordered": False})
    journal.created("k1", "j1")
    journal.chunk("k1", 0, "ck0", {"circuits": {"a": "x"}, "finalized": "false"}, last=False)
    entry = journal.find(BASE, "j1")
    assert entry is not None and entry.interrupted and not entry.complete
    async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
        with aioresponses() as m:
            m.post(CANCEL, payload={"status": "cancelled"})
            with pytest.raises(ResumeError, match="cannot be finished"):
                await client.resume("j1")
            assert len(m.requests[("POST", URL(CANCEL))]) == 1
            assert ("POST", URL(ADD)) not in m.requests  # never half a batch
    entry = Journal(path).find(BASE, "j1")
    assert entry is not None and entry.state == ABANDONED


def test_a_chunk_missing_from_the_journal_leaves_it_incomplete(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.begin("k1", BASE, ["a", "b", "c"], {})
    journal.chunk("k1", 0, "ck0", {"circuits": {"a": "x"}}, last=False)
    # chunk 1 was never recorded (a failed write): the submission cannot be finished
    journal.chunk("k1", 2, "ck2", {"circuits": {"c": "z"}, "finalized": "true"}, last=True)
    entry = journal.find(BASE, "k1")
    assert entry is not None and not entry.complete


def test_the_last_chunk_completes_a_submission(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.begin("k1", BASE, ["a", "b"], {})
    journal.chunk("k1", 0, "ck0", {"circuits": {"a": "x"}}, last=False)
    journal.chunk("k1", 1, "ck1", {"circuits": {"b": "y"}, "finalized": "true"}, last=True)
    entry = journal.find(BASE, "k1")
    assert entry is not None and entry.complete and entry.n_chunks == 2
    assert [chunk.chunk_key for chunk in journal.pending_chunks("k1")] == ["ck0", "ck1"]


def test_the_last_recorded_chunk_is_final(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    begin_with_chunks(journal, "k1", ["a", "b", "c"], {"init": {"tag": "t"}}, 3)
    journal.chunk_sent("k1", 0)
    pending = journal.pending_chunks("k1")
    assert [(c.index, c.final) for c in pending] == [(1, False), (2, True)]
    assert [c.wire_body["finalized"] for c in pending] == ["false", "true"]


async def test_resume_cancels_a_cancelled_submission_whose_cleanup_did_not_end(
    tmp_path: Path,
) -> None:
    """A process that died while its background cleanup ran: resume cancels, never finishes."""
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    begin_with_chunks(journal, "k1", ["a"], {"init": {"tag": "t"}, "ordered": False}, 1)
    journal.cancelling("k1")  # init's outcome unknown: the job id was never seen
    entry = journal.find(BASE, "k1")
    assert entry is not None and entry.interrupted and entry.cancelling
    keys: list[str] = []

    def init(url: URL, **kwargs: Any) -> CallbackResult:
        keys.append(kwargs["headers"]["Idempotency-Key"])
        return CallbackResult(payload={"job_id": "j1"})

    async with AsyncJobClient(BASE, TOKEN, journal=path) as client:
        with aioresponses() as m:
            m.post(INIT, callback=init)
            m.post(CANCEL, payload={"status": "cancelled"})
            with pytest.raises(ResumeError, match="was cancelled"):
                await client.resume("k1")
            assert keys == ["k1"]  # the job found again by its init key
            assert len(m.requests[("POST", URL(CANCEL))]) == 1
            assert ("POST", URL(ADD)) not in m.requests
    entry = Journal(path).find(BASE, "k1")
    assert entry is not None and entry.state == ABANDONED


@pytest.mark.parametrize("n", [1, 4096, 4097, 10_000])
def test_labels_are_serialised_a_slice_at_a_time_into_the_same_json(n: int) -> None:
    labels = tuple(f'c"{i}\\é' if i % 3 else f"c{i}" for i in range(n))
    text = _json_list(labels)
    assert text == json.dumps(list(labels))
    assert json.loads(text) == list(labels)
