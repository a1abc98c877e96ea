"""The client's use of the `jobs/watch/` long-poll extension, with HTTP mocked."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import pytest
from yarl import URL

from asyncjob import (
    AsyncJobClient,
    ConfigurationError,
    ExecutionResult,
    JobStatus,
    Limits,
    NotFoundError,
    PollingPolicy,
    ProtocolError,
    Response,
    ServerError,
    _completed,
    _status,
)

from .conftest import BASE, TOKEN, CallbackResult, TurnCounter, aioresponses, fast_retry
from .test_client import calls, histogram_entry, results_url, sent_body, status_url

WATCH = f"{BASE}jobs/watch/"


def watched(**statuses: str | None) -> dict[str, Any]:
    """A `jobs/watch/` answer: job id -> status (None: unknown job)."""
    return {
        "jobs": {
            job: None if status is None else {"job_id": job, "status": status}
            for job, status in statuses.items()
        }
    }


@pytest.fixture
async def client() -> AsyncIterator[AsyncJobClient]:
    async with AsyncJobClient(
        BASE, TOKEN, retry=fast_retry(), polling=PollingPolicy(interval=0.25), timeout=2.0
    ) as c:
        yield c


async def test_a_poll_is_held_by_the_server_and_needs_no_status_request(
    client: AsyncJobClient,
) -> None:
    progress: list[tuple[int, str]] = []
    finished: list[Response] = []
    with aioresponses() as m:
        m.post(WATCH, payload=watched(j1="RUNNING"))
        m.post(WATCH, payload={"jobs": {"j1": {"status": "COMPLETED", "run_time": 1.5}}})
        status = await client.poll_job_status(
            "j1",
            loop_until_complete=True,
            progress_callback=lambda n, s: progress.append((n, s)),
            on_complete=finished.append,
        )
        bodies = [sent_body(call) for call in calls(m, "POST", WATCH)]
        assert calls(m, "GET", status_url()) == []
    assert status is JobStatus.COMPLETED
    assert progress == [(1, "RUNNING")]
    assert [response.json()["run_time"] for response in finished] == [1.5]
    assert bodies == [{"job_ids": ["j1"], "timeout": 0.25}] * 2


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 404, "payload": {"detail": "Not found."}},
        {"status": 405, "body": "<html>Method Not Allowed</html>"},
        {"status": 403, "payload": {"detail": "forbidden"}},
        {"status": 200, "payload": {"jobs": {}}},
        {"status": 200, "payload": {"jobs": {"j1": "RUNNING"}}},
        {"status": 200, "body": "<html>an app shell</html>"},
    ],
    ids=["404", "405", "403", "missing job", "entry not an object", "not json"],
)
async def test_a_server_without_the_extension_is_polled_per_job(
    client: AsyncJobClient, answer: dict[str, Any]
) -> None:
    with aioresponses() as m:
        m.post(WATCH, **answer)
        m.get(status_url(), payload={"status": "RUNNING"})
        m.get(status_url(), payload={"status": "COMPLETED"})
        m.get(status_url(), payload={"status": "COMPLETED"})
        assert await client.poll_job_status("j1", loop_until_complete=True) is JobStatus.COMPLETED
        assert await client.poll_job_status("j1", loop_until_complete=True) is JobStatus.COMPLETED
        assert len(calls(m, "POST", WATCH)) == 1  # found out once, not asked again
        assert len(calls(m, "GET", status_url())) == 3


async def test_a_watch_that_keeps_failing_is_raised_not_taken_for_a_missing_extension(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.post(WATCH, status=503, body="<html>down</html>", repeat=True)
        with pytest.raises(ServerError):
            await client.poll_job_status("j1", loop_until_complete=True)
        assert calls(m, "GET", status_url()) == []
    with aioresponses() as m:  # the server is back: the client still watches
        m.post(WATCH, payload=watched(j1="COMPLETED"))
        assert await client.poll_job_status("j1", loop_until_complete=True) is (
            JobStatus.COMPLETED
        )


async def test_an_unknown_status_in_a_watch_answer_is_a_protocol_error(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.post(WATCH, payload=watched(j1="DONE"))
        with pytest.raises(ProtocolError, match="DONE"):
            await client.poll_job_status("j1", loop_until_complete=True)
        assert calls(m, "GET", status_url()) == []


async def test_a_job_the_server_does_not_know_is_asked_for_directly(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.post(WATCH, payload=watched(j1=None))
        m.get(status_url(), status=404, payload={"detail": "job not found"})
        with pytest.raises(NotFoundError):
            await client.poll_job_status("j1", loop_until_complete=True)


async def test_a_single_poll_and_watch_false_use_the_status_endpoint() -> None:
    async with AsyncJobClient(BASE, TOKEN, polling_interval=0.001, watch=False) as client:
        with aioresponses() as m:
            m.get(status_url(), payload={"status": "RUNNING"})
            m.get(status_url(), payload={"status": "COMPLETED"})
            assert await client.poll_job_status("j1") is JobStatus.RUNNING
            assert await client.poll_job_status("j1", loop_until_complete=True) is (
                JobStatus.COMPLETED
            )
            assert calls(m, "POST", WATCH) == []


async def test_a_connection_failure_of_the_long_poll_is_raised(client: AsyncJobClient) -> None:
    with aioresponses() as m:
        m.post(WATCH, exception=aiohttp.ClientConnectionError("refused"), repeat=True)
        with pytest.raises(Exception, match="jobs/watch/") as info:
            await client.poll_job_status("j1", loop_until_complete=True)
        assert type(info.value).__name__ == "ConnectionFailedError"
        assert calls(m, "GET", status_url()) == []


# -- as_completed -------------------------------------------------------------


async def test_as_completed_follows_every_job_with_one_request_at_a_time(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.post(WATCH, payload=watched(j1="COMPLETED", j2="RUNNING", j3="PENDING"))
        m.post(WATCH, payload=watched(j2="FAILED", j3="RUNNING"))
        m.post(WATCH, payload=watched(j3="COMPLETED"))
        for job in ("j1", "j3"):
            m.get(
                results_url(job),
                payload={"next": None, "results": [histogram_entry("a", {"1": 2})]},
            )
        handles = [ExecutionResult(job_id=j) for j in ("j1", "j2", "j3")]
        async with client.as_completed(handles) as outcomes:
            got = {o.handle.job_id: o async for o in outcomes}
        bodies = [sent_body(call)["job_ids"] for call in calls(m, "POST", WATCH)]
        assert all(calls(m, "GET", status_url(job)) == [] for job in ("j1", "j2", "j3"))
    assert bodies == [["j1", "j2", "j3"], ["j2", "j3"], ["j3"]]
    assert got["j1"].status is JobStatus.COMPLETED and got["j1"].result is not None
    assert got["j2"].status is JobStatus.FAILED and got["j2"].result is None
    assert got["j3"].status is JobStatus.COMPLETED and got["j3"].error is None


async def test_as_completed_asks_for_settled_jobs_only_and_takes_a_partial_answer(
    client: AsyncJobClient,
) -> None:
    """Jobs left out of an answer are still running: only settled ones come back."""
    with aioresponses() as m:
        m.post(WATCH, payload=watched(j2="COMPLETED"))  # j1 and j3 left out: running
        m.post(WATCH, payload={"jobs": {}})  # the hold ended with nothing settled
        m.post(WATCH, payload=watched(j1="CANCELLED", j3=None))
        m.get(status_url("j3"), payload={"status": "FAILED"})
        m.get(
            results_url("j2"), payload={"next": None, "results": [histogram_entry("a", {"1": 2})]}
        )
        handles = [ExecutionResult(job_id=j) for j in ("j1", "j2", "j3")]
        async with client.as_completed(handles) as outcomes:
            got = {o.handle.job_id: o async for o in outcomes}
        bodies = [sent_body(call) for call in calls(m, "POST", WATCH)]
    assert [body["job_ids"] for body in bodies] == [["j1", "j2", "j3"], ["j1", "j3"], ["j1", "j3"]]
    assert all(body["settled_only"] is True for body in bodies)
    assert got["j1"].status is JobStatus.CANCELLED
    assert got["j2"].status is JobStatus.COMPLETED and got["j2"].result is not None
    assert got["j3"].status is JobStatus.FAILED  # unknown to the watch: polled directly


async def test_a_watch_answer_naming_a_job_not_asked_for_falls_back_to_polling(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.post(WATCH, payload=watched(j1="COMPLETED", stranger="COMPLETED"))
        m.get(status_url("j1"), payload={"status": "CANCELLED"})
        async with client.as_completed([ExecutionResult(job_id="j1")]) as outcomes:
            got = [o async for o in outcomes]
        assert len(calls(m, "POST", WATCH)) == 1
    assert [(o.handle.job_id, o.status) for o in got] == [("j1", JobStatus.CANCELLED)]


async def test_as_completed_watches_in_groups_of_watch_batch_and_keeps_duplicates(
    client: AsyncJobClient,
) -> None:
    batch = _completed.WATCH_BATCH

    def answer(url: URL, **kwargs: Any) -> CallbackResult:
        ids = json.loads(kwargs["data"])["job_ids"]
        return CallbackResult(payload={"jobs": {j: {"status": "CANCELLED"} for j in ids}})

    handles = [ExecutionResult(job_id=f"j{i}") for i in range(batch + 1)]
    handles.append(ExecutionResult(job_id="j0"))
    with aioresponses() as m:
        m.post(WATCH, callback=answer, repeat=True)
        async with client.as_completed(handles) as outcomes:
            got = [o async for o in outcomes]
        sizes = sorted(len(sent_body(call)["job_ids"]) for call in calls(m, "POST", WATCH))
    assert sizes == [1, batch]
    assert len(got) == batch + 2
    assert sum(o.handle.job_id == "j0" for o in got) == 2
    assert all(o.status is JobStatus.CANCELLED for o in got)


@pytest.mark.parametrize("status", [400, 413])
async def test_a_server_refusing_large_watch_groups_is_watched_in_smaller_ones(
    status: int,
) -> None:
    """A server taking at most 1,000 ids (as older local schedulers) is still watched."""

    def answer(url: URL, **kwargs: Any) -> CallbackResult:
        ids = json.loads(kwargs["data"])["job_ids"]
        if len(ids) > 1000:
            return CallbackResult(status=status, payload={"detail": "job_ids: 1 to 1000"})
        return CallbackResult(payload={"jobs": {j: {"status": "CANCELLED"} for j in ids}})

    handles = [ExecutionResult(job_id=f"j{i}") for i in range(1001)]
    polling = PollingPolicy(interval=0.01)
    async with AsyncJobClient(BASE, TOKEN, retry=fast_retry(), polling=polling) as client:
        with aioresponses() as m:
            m.post(WATCH, callback=answer, repeat=True)
            async with client.as_completed(handles, fetch_results=False) as outcomes:
                got = [o async for o in outcomes]
            sizes = sorted(len(sent_body(call)["job_ids"]) for call in calls(m, "POST", WATCH))
    assert len(got) == 1001 and all(o.status is JobStatus.CANCELLED for o in got)
    assert sizes == [1, 500, 500, 1001]  # no status/ polls: aioresponses would refuse them


async def test_as_completed_falls_back_to_polling_each_job_when_watching_fails(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.post(WATCH, exception=aiohttp.ClientConnectionError("refused"), repeat=True)
        m.get(status_url("j1"), payload={"status": "CANCELLED"})
        m.get(status_url("j2"), status=404, payload={"detail": "gone"})
        handles = [ExecutionResult(job_id=j) for j in ("j1", "j2")]
        async with client.as_completed(handles) as outcomes:
            got = {o.handle.job_id: o async for o in outcomes}
    assert got["j1"].status is JobStatus.CANCELLED and got["j1"].error is None
    assert isinstance(got["j2"].error, NotFoundError)


async def test_as_completed_polls_each_job_when_max_retries_is_set() -> None:
    polling = PollingPolicy(interval=0.001, max_retries=5)
    async with AsyncJobClient(BASE, TOKEN, polling=polling) as client:
        with aioresponses() as m:
            m.get(status_url(), payload={"status": "COMPLETED"})
            async with client.as_completed(
                [ExecutionResult(job_id="j1")], fetch_results=False
            ) as outcomes:
                got = [o async for o in outcomes]
            assert calls(m, "POST", WATCH) == []
    assert [o.status for o in got] == [JobStatus.COMPLETED]


class FakeClock:
    """The watch rounds' clock (`_status._now` / `_sleep_until`): time moves only by sleeping."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep_until(self, when: float) -> None:
        if when > self.now:
            self.sleeps.append(when - self.now)
            self.now = when
        await anyio.lowlevel.checkpoint()


async def _round_starts(
    monkeypatch: pytest.MonkeyPatch,
    pace: float,
    answer: Callable[[list[str], int], dict[str, Any]],
) -> tuple[FakeClock, list[float]]:
    """Follow 4 jobs on a `FakeClock`; `answer(ids, n)` is the n-th watch answer (from 1).

    Returns the clock and the time each round started.
    """
    clock = FakeClock()
    monkeypatch.setattr(_status, "_now", clock.time)
    monkeypatch.setattr(_status, "_sleep_until", clock.sleep_until)
    starts: list[float] = []

    def callback(url: URL, **kwargs: Any) -> CallbackResult:
        starts.append(clock.now)
        ids = json.loads(kwargs["data"])["job_ids"]
        return CallbackResult(payload=answer(ids, len(starts)))

    polling = PollingPolicy(interval=2.0, watch_pace=pace)
    async with AsyncJobClient(BASE, TOKEN, polling=polling) as client:
        with aioresponses() as m:
            m.post(WATCH, callback=callback, repeat=True)
            handles = [ExecutionResult(job_id=f"j{i}") for i in range(4)]
            async with client.as_completed(handles) as outcomes:
                got = [o async for o in outcomes]
    assert len(got) == 4
    return clock, starts


@pytest.mark.parametrize("pace", [0.25, 0.0])
async def test_as_completed_starts_watch_rounds_no_more_often_than_the_pace(
    monkeypatch: pytest.MonkeyPatch, pace: float
) -> None:
    """Each answer settles one job at once: rounds still start `watch_pace` apart.

    A round without news is followed one hold (the polling interval) later.
    """

    def answer(ids: list[str], n: int) -> dict[str, Any]:
        if n == 2:  # the hold ended with nothing settled
            return {"jobs": {}}
        return {"jobs": {ids[0]: {"status": "CANCELLED"}}}

    clock, starts = await _round_starts(monkeypatch, pace, answer)
    assert [b - a for a, b in itertools.pairwise(starts)] == [pace, 2.0, pace, pace]
    # The round that settled the last job is not followed by a pace: the iteration ends.
    assert clock.now == starts[-1]


async def test_a_round_follows_at_once_when_the_server_has_more_finished_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`"more": true` (finished jobs left out, their results did not fit): no pace, ask again.

    A hostile server saying `more` for ever still settles a job each round, so
    the rounds without pace end with the jobs.
    """

    def answer(ids: list[str], n: int) -> dict[str, Any]:
        more = n != 2  # the second answer has no more: the third round is paced
        return {"jobs": {ids[0]: {"status": "CANCELLED"}}, "more": more}

    _, starts = await _round_starts(monkeypatch, 0.25, answer)
    assert [b - a for a, b in itertools.pairwise(starts)] == [0.0, 0.25, 0.0]


def test_watch_pace_must_be_a_small_non_negative_number() -> None:
    assert PollingPolicy().watch_pace == 0.25
    for bad in (-0.1, 60.0, True, "0.1"):
        with pytest.raises(ConfigurationError, match="watch_pace"):
            PollingPolicy(watch_pace=bad)  # type: ignore[arg-type]
    assert AsyncJobClient(BASE, TOKEN, watch_pace=0.5).config.polling.watch_pace == 0.5


# -- results inline in the watch answer (`inline_results`) --------------------


def finished_with(page: object) -> dict[str, Any]:
    """A watch answer: j1 COMPLETED, carrying `page` as its results page unless it is None."""
    entry: dict[str, Any] = {"job_id": "j1", "status": "COMPLETED"}
    if page is not None:
        entry["results_page"] = page
    return {"jobs": {"j1": entry}}


ONE_PAGE = {"count": 2, "next": None, "results": [histogram_entry("b", {"01": 3})]}


async def test_as_completed_takes_results_the_watch_answer_carries_without_a_request(
    client: AsyncJobClient,
) -> None:
    page = {
        "count": 2,
        "next": None,
        "results": [histogram_entry("b", {"01": 3}), histogram_entry("a", {"1": 2})],
    }
    client._ctx.labels["j1"] = ("a", "b")
    with aioresponses() as m:
        m.post(WATCH, payload=finished_with(page))
        async with client.as_completed([ExecutionResult(job_id="j1")]) as outcomes:
            got = [o async for o in outcomes]
        body = sent_body(calls(m, "POST", WATCH)[0])
        assert calls(m, "GET", results_url()) == []
    assert body["inline_results"] == 100  # the results page size
    assert got[0].error is None and got[0].result is not None
    assert [r["label"] for r in got[0].result.results] == ["a", "b"]  # submission order
    assert got[0].result.results[1]["results"] == {"01": 3}


@pytest.mark.parametrize("page", [None, "a page", ["a", "page"]], ids=["absent", "str", "list"])
async def test_as_completed_fetches_results_the_watch_answer_does_not_carry(
    client: AsyncJobClient, page: object
) -> None:
    """A server without `inline_results` (or with a page of another shape): one GET."""
    with aioresponses() as m:
        m.post(WATCH, payload=finished_with(page))
        m.get(results_url(), payload={"next": None, "results": [histogram_entry("a", {"1": 2})]})
        async with client.as_completed([ExecutionResult(job_id="j1")]) as outcomes:
            got = [o async for o in outcomes]
        assert len(calls(m, "GET", results_url())) == 1
    assert got[0].error is None and got[0].result is not None
    assert got[0].result.results == [{"label": "a", "results": {"1": 2}}]


async def test_an_inline_page_of_part_of_the_results_is_completed_by_requests(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.post(WATCH, payload=finished_with(ONE_PAGE))
        m.get(
            results_url(offset=1, limit=1),
            payload={"count": 2, "next": None, "results": [histogram_entry("a", {"1": 2})]},
        )
        async with client.as_completed([ExecutionResult(job_id="j1")]) as outcomes:
            got = [o async for o in outcomes]
    assert got[0].error is None and got[0].result is not None
    assert sorted(r["label"] for r in got[0].result.results) == ["a", "b"]


@pytest.mark.parametrize(
    "page",
    [{"count": 1, "next": None}, {"count": 1, "next": None, "results": [{"label": 7}]}],
    ids=["no results list", "bad entry"],
)
async def test_a_malformed_inline_page_is_a_protocol_error_of_that_job(
    client: AsyncJobClient, page: dict[str, Any]
) -> None:
    with aioresponses() as m:
        m.post(WATCH, payload=finished_with(page))
        async with client.as_completed([ExecutionResult(job_id="j1")]) as outcomes:
            got = [o async for o in outcomes]
    assert got[0].status is JobStatus.COMPLETED
    assert isinstance(got[0].error, ProtocolError)


async def test_no_results_are_asked_inline_when_they_are_not_fetched(
    client: AsyncJobClient,
) -> None:
    with aioresponses() as m:
        m.post(WATCH, payload=finished_with(None))
        async with client.as_completed(
            [ExecutionResult(job_id="j1")], fetch_results=False
        ) as outcomes:
            got = [o async for o in outcomes]
        body = sent_body(calls(m, "POST", WATCH)[0])
    assert "inline_results" not in body
    assert got[0].status is JobStatus.COMPLETED and got[0].result is None


async def test_two_handles_of_one_job_both_take_the_inline_page(client: AsyncJobClient) -> None:
    """The page a watch answer carries serves every handle of its job (it is not consumed)."""
    handles = [ExecutionResult(job_id="j1"), ExecutionResult(job_id="j1")]
    with aioresponses() as m:
        m.post(WATCH, payload=finished_with({**ONE_PAGE, "count": 1}))
        async with client.as_completed(handles) as outcomes:
            got = [o async for o in outcomes]
        assert calls(m, "GET", results_url()) == []
    assert [o.error for o in got] == [None, None]
    assert [o.result.results for o in got if o.result] == [
        [{"label": "b", "results": {"01": 3}}]
    ] * 2


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ({"count": 2, "next": None, "results": [histogram_entry("a", {"1": 2})] * 2}, "twice"),
        (
            {"count": 2, "next": None, "results": [histogram_entry(x, {"1": 2}) for x in "az"]},
            "unknown",
        ),
        ({"count": 3, "next": None, "results": [histogram_entry("a", {"1": 2})]}, "counts 3"),
        ({"count": 2, "next": None, "results": [histogram_entry("a", {"1": 2})]}, "empty"),
    ],
    ids=["duplicate label", "unknown label", "count", "short page"],
)
async def test_a_hostile_inline_page_is_refused_like_a_fetched_one(
    client: AsyncJobClient, page: dict[str, Any], message: str
) -> None:
    client._ctx.labels["j1"] = ("a", "b")
    with aioresponses() as m:
        m.post(WATCH, payload=finished_with(page))
        m.get(results_url(offset=1, limit=1), payload={"count": 3, "next": None, "results": []})
        async with client.as_completed([ExecutionResult(job_id="j1")]) as outcomes:
            got = [o async for o in outcomes]
    assert isinstance(got[0].error, ProtocolError)
    assert message in str(got[0].error)


@pytest.mark.parametrize("failure", ["too large", "refused"])
async def test_a_failed_answer_with_results_inline_is_asked_again_without_them(
    failure: str,
) -> None:
    """Watching goes on, without `inline_results`, instead of being given up for polling."""
    answers = {"too large": CallbackResult(body="x" * 5000), "refused": CallbackResult(status=400)}
    bodies: list[dict[str, Any]] = []

    def answer(url: URL, **kwargs: Any) -> CallbackResult:
        bodies.append(json.loads(kwargs["data"]))
        if "inline_results" in bodies[-1]:
            return answers[failure]
        job = bodies[-1]["job_ids"][0]
        return CallbackResult(payload={"jobs": {job: {"job_id": job, "status": "COMPLETED"}}})

    limits = Limits(max_response_bytes=4096)
    async with AsyncJobClient(BASE, TOKEN, retry=fast_retry(), limits=limits) as client:
        with aioresponses() as m:
            m.post(WATCH, callback=answer, repeat=True)
            m.get(results_url(), payload=ONE_PAGE | {"count": 1}, repeat=True)
            m.get(results_url("j2"), payload=ONE_PAGE | {"count": 1}, repeat=True)
            for job in ("j1", "j2"):
                async with client.as_completed([ExecutionResult(job_id=job)]) as outcomes:
                    got = [o async for o in outcomes]
                assert got[0].error is None and got[0].result is not None
            assert calls(m, "GET", status_url()) == []  # never fell back to polling
    assert ["inline_results" in body for body in bodies] == [True, False, False]


async def test_the_answers_of_two_watch_groups_are_not_handled_in_one_turn(
    client: AsyncJobClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups answered together are noted one after the other, not in the same loop turns."""
    batch = 100
    monkeypatch.setattr(_completed, "WATCH_BATCH", batch)
    counter = TurnCounter()
    noted: list[tuple[int, int]] = []  # (turn, group)
    note_status = _status.StatusFollower._note_status

    def recording(self: Any, job_id: str, data: object, where: str) -> JobStatus:
        noted.append((counter.turns, int(job_id[1:]) // batch))
        return note_status(self, job_id, data, where)

    def answer(url: URL, **kwargs: Any) -> CallbackResult:
        ids = json.loads(kwargs["data"])["job_ids"]
        return CallbackResult(payload={"jobs": {j: {"status": "CANCELLED"} for j in ids}})

    monkeypatch.setattr(_status.StatusFollower, "_note_status", recording)
    handles = [ExecutionResult(job_id=f"j{i}") for i in range(2 * batch)]
    with aioresponses() as m:
        m.post(WATCH, callback=answer, repeat=True)
        async with anyio.create_task_group() as tg:
            tg.start_soon(counter.run)
            async with client.as_completed(handles, fetch_results=False) as outcomes:
                got = [o async for o in outcomes]
            tg.cancel_scope.cancel()
    assert len(got) == len(noted) == 2 * batch
    groups_of_turn: dict[int, set[int]] = {}
    for turn, group in noted:
        groups_of_turn.setdefault(turn, set()).add(group)
    assert all(len(groups) == 1 for groups in groups_of_turn.values())
