"""The `jobs/watch/` extension of the local scheduler: many jobs' status in one long poll."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import pytest

from asyncjob import _status
from asyncjob.local import LocalScheduler, _routes

from .conftest import BELL, TOKEN, Factory, completed_results, submit


async def watch(
    http: aiohttp.ClientSession, body: dict[str, Any], expect: int = 200
) -> dict[str, Any]:
    async with http.post("jobs/watch/", json=body) as response:
        assert response.status == expect, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


def session(scheduler: LocalScheduler) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        scheduler.base_url, headers={"Authorization": f"Bearer {scheduler.token}"}
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"job_ids": "j1"},
        {"job_ids": []},
        {"job_ids": [1, 2]},
        {"job_ids": ["j"] * (_routes.MAX_WATCH_JOBS + 1)},
        {"job_ids": ["j"], "timeout": -1},
        {"job_ids": ["j"], "timeout": "5"},
        {"job_ids": ["j"], "timeout": True},
        {"job_ids": ["j"], "settled_only": "yes"},
        {"job_ids": ["j"], "inline_results": -1},
        {"job_ids": ["j"], "inline_results": 1.5},
        {"job_ids": ["j"], "inline_results": True},
    ],
    ids=[
        "no ids",
        "a string",
        "empty",
        "ints",
        "too many",
        "negative",
        "text",
        "bool",
        "settled_only not a bool",
        "inline_results negative",
        "inline_results a float",
        "inline_results a bool",
    ],
)
async def test_bad_requests_are_400(http: aiohttp.ClientSession, body: dict[str, Any]) -> None:
    answer = await watch(http, body, expect=400)
    assert answer["detail"]


async def test_takes_the_clients_largest_group(http: aiohttp.ClientSession) -> None:
    """`as_completed` lists up to `WATCH_BATCH` jobs in one request: the scheduler takes them."""
    ids = [f"unknown-{i}" for i in range(_status.WATCH_BATCH)]
    answer = await watch(http, {"job_ids": ids, "timeout": 0})
    assert answer["jobs"] == dict.fromkeys(ids)


async def test_answers_at_once_when_a_job_is_terminal_or_unknown(
    make_scheduler: Factory,
) -> None:
    scheduler = await make_scheduler(job_duration=3600)
    async with session(scheduler) as http:
        running = await submit(http, {"a": BELL})
        with anyio.fail_after(10):  # a 60 s hold would trip this
            answer = await watch(http, {"job_ids": [running, "nope"], "timeout": 60})
        assert answer["jobs"]["nope"] is None
        assert answer["jobs"][running]["status"] in ("PENDING", "RUNNING")
        assert answer["jobs"][running]["job_id"] == running


async def test_held_until_a_job_changes_to_terminal(make_scheduler: Factory) -> None:
    scheduler = await make_scheduler(job_duration=3600)
    async with session(scheduler) as http:
        jobs = [await submit(http, {"a": BELL}) for _ in range(3)]

        async def cancel_once_held() -> None:
            await scheduler.wait_until(
                lambda: scheduler.stats.requests_by_endpoint.get("watch", 0) == 1
            )
            async with http.post(f"job/{jobs[1]}/cancel/") as response:
                assert response.status == 200

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_once_held)
                answer = await watch(http, {"job_ids": jobs, "timeout": 60})
        statuses = {job: entry["status"] for job, entry in answer["jobs"].items()}
        assert statuses[jobs[1]] == "CANCELLED"  # only a held request can have seen that
        assert {statuses[jobs[0]], statuses[jobs[2]]} <= {"PENDING", "RUNNING"}
        assert scheduler.stats.polls == 1


async def test_settled_only_leaves_out_jobs_still_running(make_scheduler: Factory) -> None:
    scheduler = await make_scheduler(job_duration=3600)
    async with session(scheduler) as http:
        running = await submit(http, {"a": BELL})
        body = {"job_ids": [running, "nope"], "timeout": 0, "settled_only": True}
        answer = await watch(http, body)
        assert answer == {"jobs": {"nope": None}}
        body = {"job_ids": [running], "timeout": 0, "settled_only": True}
        assert await watch(http, body) == {"jobs": {}}
        async with http.post(f"job/{running}/cancel/") as response:
            assert response.status == 200, await response.text()
        answer = await watch(http, body)
        assert answer["jobs"][running]["status"] == "CANCELLED"


async def test_timeout_zero_is_a_plain_batch_status(make_scheduler: Factory) -> None:
    scheduler = await make_scheduler(job_duration=3600)
    async with session(scheduler) as http:
        jobs = [await submit(http, {"a": BELL}) for _ in range(3)]
        answer = await watch(http, {"job_ids": jobs, "timeout": 0})
        assert sorted(answer["jobs"]) == sorted(jobs)
        assert all(entry["status"] in ("PENDING", "RUNNING") for entry in answer["jobs"].values())


async def test_a_held_request_ends_when_the_server_stops(make_scheduler: Factory) -> None:
    scheduler = await make_scheduler(job_duration=3600)
    async with session(scheduler) as http:
        job = await submit(http, {"a": BELL})

        async def stop_once_held() -> None:
            await scheduler.wait_until(
                lambda: scheduler.stats.requests_by_endpoint.get("watch", 0) == 1
            )
            await scheduler.stop()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_once_held)
                try:
                    answer = await watch(http, {"job_ids": [job], "timeout": 60})
                except aiohttp.ClientError:
                    return  # the connection was closed under it: ended, too
                assert answer["jobs"][job]["status"] in ("PENDING", "RUNNING")


async def test_without_the_extension_it_is_404(make_scheduler: Factory) -> None:
    scheduler = await make_scheduler(watch=False)
    async with session(scheduler) as http:
        await watch(http, {"job_ids": ["j"], "timeout": 1}, expect=404)


async def test_needs_the_token(server: LocalScheduler) -> None:
    async with aiohttp.ClientSession(server.base_url) as http:
        answer = await watch(http, {"job_ids": ["j"]}, expect=401)
    assert TOKEN not in str(answer)


async def test_inline_results_carries_small_completed_jobs_first_page(
    server: LocalScheduler, http: aiohttp.ClientSession
) -> None:
    two = await submit(http, {"a": BELL, "b": BELL})
    three = await submit(http, {"a": BELL, "b": BELL, "c": BELL})
    for job_id in (two, three):
        await completed_results(server, http, job_id)
    ids = [two, three, "nope"]
    answer = await watch(http, {"job_ids": ids, "timeout": 0, "inline_results": 2})
    async with http.get(f"job/{two}/resultsV2/?limit=2&offset=0") as response:
        assert answer["jobs"][two]["results_page"] == await response.json()
    assert "results_page" not in answer["jobs"][three]  # more results than asked for
    assert answer["jobs"]["nope"] is None
    plain = await watch(http, {"job_ids": ids, "timeout": 0})
    assert all("results_page" not in plain["jobs"][job_id] for job_id in (two, three))


async def test_inline_results_stop_at_the_answers_budget(
    server: LocalScheduler, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_routes, "MAX_INLINE_RESULTS", 3)
    jobs = [await submit(http, {"a": BELL, "b": BELL}) for _ in range(3)]
    for job_id in jobs:
        await completed_results(server, http, job_id)
    answer = await watch(http, {"job_ids": jobs, "timeout": 0, "inline_results": 2})
    assert ["results_page" in answer["jobs"][job_id] for job_id in jobs] == [True, False, False]


async def test_with_settled_only_jobs_past_the_budget_wait_for_a_later_round(
    server: LocalScheduler, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COMPLETED job whose page does not fit is left out, so the next round carries it."""
    monkeypatch.setattr(_routes, "MAX_INLINE_RESULTS", 3)
    small = [await submit(http, {"a": BELL, "b": BELL}) for _ in range(3)]
    large = await submit(http, {"a": BELL, "b": BELL, "c": BELL})
    for job_id in [*small, large]:
        await completed_results(server, http, job_id)
    body = {"job_ids": [*small, large], "timeout": 0, "inline_results": 2, "settled_only": True}
    first = await watch(http, body)
    assert list(first["jobs"]) == [small[0], large]  # the large job never comes inline
    assert "results_page" in first["jobs"][small[0]]
    assert "results_page" not in first["jobs"][large]
    assert first["more"] is True
    body["job_ids"] = small[1:]
    second = await watch(http, body)
    assert list(second["jobs"]) == [small[1]] and "results_page" in second["jobs"][small[1]]
    assert second["more"] is True
    body["job_ids"] = small[2:]
    assert "more" not in await watch(http, body)  # nothing left out


async def test_inline_results_leave_out_jobs_not_completed(make_scheduler: Factory) -> None:
    scheduler = await make_scheduler(job_duration=3600)
    async with session(scheduler) as http:
        job_id = await submit(http, {"a": BELL})
        async with http.post(f"job/{job_id}/cancel/") as response:
            assert response.status == 200, await response.text()
        answer = await watch(http, {"job_ids": [job_id], "timeout": 0, "inline_results": 5})
    assert answer["jobs"][job_id]["status"] == "CANCELLED"
    assert "results_page" not in answer["jobs"][job_id]
