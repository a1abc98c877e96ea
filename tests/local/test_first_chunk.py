"""The `first_chunk` extension of `job/init/`: a job and its first chunk in one request."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from asyncjob.local import LocalScheduler

from .conftest import BELL, TOKEN, Factory, chunk, completed_results

INIT = {"tag": "t", "job_type": "EXECUTE", "simulator_cluster": "qoro_maestro"}


async def init(
    http: aiohttp.ClientSession, body: dict[str, Any], key: str | None = None, expect: int = 201
) -> dict[str, Any]:
    headers = {} if key is None else {"Idempotency-Key": key}
    async with http.post("job/init/", json=body, headers=headers) as response:
        assert response.status == expect, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def test_the_job_is_created_with_its_chunk(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    first = {"idempotency_key": "c1", "body": chunk({"a": BELL, "b": BELL})}
    answer = await init(http, {**INIT, "first_chunk": first})
    job_id = answer["job_id"]
    assert isinstance(answer["first_chunk"], dict)
    job = server.job(job_id)
    assert job is not None and job.finalized and sorted(job.labels) == ["a", "b"]
    results = await completed_results(server, http, job_id)
    assert [r["label"] for r in results] == ["a", "b"]
    # The chunk's key is known: uploading it again (a resumed client) changes nothing.
    async with http.post(
        f"job/{job_id}/add_circuits/", json=first["body"], headers={"Idempotency-Key": "c1"}
    ) as response:
        assert response.status == 200, await response.text()
    assert server.stats.duplicate_chunks_refused == 1
    assert sorted(server.job(job_id).labels) == ["a", "b"]  # type: ignore[union-attr]


async def test_a_repeated_init_key_returns_the_job_and_applies_nothing_twice(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    body = {**INIT, "first_chunk": {"idempotency_key": "c1", "body": chunk({"a": BELL})}}
    first = await init(http, body, key="k1")
    again = await init(http, body, key="k1", expect=200)
    assert again["job_id"] == first["job_id"] and again["first_chunk"] == first["first_chunk"]
    assert server.stats.jobs_created == 1
    assert server.job(first["job_id"]).labels == ("a",)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad",
    [
        {"idempotency_key": "c1", "body": chunk({"a": "not qasm"})},
        {"idempotency_key": "c1", "body": {**chunk({"a": BELL}), "shots": 0}},
        {"idempotency_key": "c1", "body": "not an object"},
        {"idempotency_key": 5, "body": chunk({"a": BELL})},
        ["not", "an", "object"],
    ],
    ids=["invalid qasm", "bad shots", "body not an object", "key not a string", "a list"],
)
async def test_a_refused_chunk_refuses_the_request_and_leaves_no_job(
    http: aiohttp.ClientSession, server: LocalScheduler, bad: object
) -> None:
    answer = await init(http, {**INIT, "first_chunk": bad}, key="k1", expect=400)
    assert answer["detail"]
    assert server.jobs() == []
    # The init key was not spent on a job that is gone: the same key creates one now.
    assert (await init(http, INIT, key="k1"))["job_id"]


async def test_without_the_extension_the_field_is_ignored(make_scheduler: Factory) -> None:
    plain = await make_scheduler(first_chunk=False)
    async with aiohttp.ClientSession(
        plain.base_url, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as http:
        body = {**INIT, "first_chunk": {"idempotency_key": "c1", "body": chunk({"a": BELL})}}
        answer = await init(http, body)
    assert "first_chunk" not in answer
    job = plain.job(answer["job_id"])
    assert job is not None and not job.finalized and not job.labels
