"""Every endpoint of docs/protocol.md against the local scheduler, over plain HTTP."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import aiohttp
import anyio
import pytest

from asyncjob._config import MAX_PAYLOAD_BYTES
from asyncjob._histogram import decode_result
from asyncjob.local import LocalScheduler

from .conftest import BELL, TOKEN, Factory, all_results, chunk, ghz, new_job, pack, submit


async def status_of(http: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    async with http.get(f"job/{job_id}/status/") as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


# -- ping, targets, auth --------------------------------------------------------


async def test_ping_and_targets(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.base_url.endswith("/api/")
    for path in ("", "qpusystem/", "simulatorcluster/"):
        async with http.get(path) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
    async with http.get("qpusystem/") as response:
        assert await response.json() == [
            {"name": "qoro_maestro", "access_level": "PUBLIC", "qpus": []}
        ]
    async with http.get("simulatorcluster") as response:  # no trailing slash
        assert (await response.json())[0]["name"] == "qoro_maestro"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
async def test_auth_is_required_everywhere(
    server: LocalScheduler, headers: dict[str, str]
) -> None:
    async with aiohttp.ClientSession(server.base_url, headers=headers) as session:
        for method, path in [
            ("GET", ""),
            ("GET", "qpusystem/"),
            ("POST", "job/init/"),
            ("GET", "job/nope/status/"),
            ("DELETE", "job/nope"),
        ]:
            async with session.request(method, path, json={}) as response:
                assert response.status == 401
                body = await response.json()
                assert "token" in body["detail"]
                assert TOKEN not in await response.text()
    assert server.jobs() == []


async def test_generated_token_is_random(make_scheduler: Factory) -> None:
    a = await make_scheduler(token=None)
    b = await make_scheduler(token=None)
    assert a.token != b.token
    assert len(a.token) >= 20


async def test_unknown_route_and_method(http: aiohttp.ClientSession) -> None:
    async with http.get("nothing/here/") as response:
        assert response.status == 404
        assert "detail" in await response.json()
    async with http.put("job/init/") as response:
        assert response.status == 405
        assert "detail" in await response.json()


# -- job/init/ -------------------------------------------------------------------


async def test_init_creates_jobs(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    first = await new_job(http, tag="alpha")
    second = await new_job(http, "EXPECTATION")
    assert first != second
    records = {r.id: r for r in server.jobs()}
    assert records[first].tag == "alpha"
    assert records[first].status == "PENDING"
    assert not records[first].finalized
    assert records[second].job_type == "EXPECTATION"
    assert server.stats.jobs_created == 2
    assert (await status_of(http, first))["status"] == "PENDING"


async def test_init_accepts_divi_fields_and_qpu_target(http: aiohttp.ClientSession) -> None:
    body = {
        "tag": "divi",
        "job_type": "EXECUTE",
        "use_packing": False,
        "qpu_system_name": "qoro_maestro",
        "maestro_config": {"simulation_type": "auto"},
        "execution_configuration": {"anything": [1, 2]},
    }
    async with http.post("job/init", json=body) as response:  # no trailing slash
        assert response.status == 201
        assert isinstance((await response.json())["job_id"], str)


@pytest.mark.parametrize(
    "body",
    [
        {"job_type": "VALIDATE"},
        {"job_type": "SOMETHING"},
        {"simulator_cluster": "nope"},
        {"qpu_system_name": "nope"},
        {"simulator_cluster": "qoro_maestro", "qpu_system_name": "qoro_maestro"},
        {"tag": 3},
    ],
)
async def test_init_rejects_bad_requests(
    http: aiohttp.ClientSession, server: LocalScheduler, body: dict[str, Any]
) -> None:
    async with http.post("job/init/", json=body) as response:
        assert response.status == 400
        assert (await response.json())["detail"]
    assert server.jobs() == []


async def test_init_rejects_non_json(http: aiohttp.ClientSession) -> None:
    async with http.post("job/init/", data=b"{not json") as response:
        assert response.status == 400
    async with http.post("job/init/", json=[1, 2]) as response:
        assert response.status == 400


async def test_init_idempotency_key(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    body = {"tag": "t", "job_type": "EXECUTE"}
    ids = []
    for _ in range(3):
        async with http.post("job/init/", json=body, headers={"Idempotency-Key": "k-1"}) as r:
            assert r.status in (200, 201)
            ids.append((await r.json())["job_id"])
    async with http.post("job/init/", json=body, headers={"Idempotency-Key": "k-2"}) as r:
        other = (await r.json())["job_id"]
    assert ids[0] == ids[1] == ids[2] != other
    stats = server.stats
    assert stats.jobs_created == 2
    assert stats.duplicate_inits_refused == 2
    assert len(server.jobs()) == 2


# -- add_circuits/ ---------------------------------------------------------------


async def test_chunks_then_finalize(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    job_id = await new_job(http)
    async with http.post(
        f"job/{job_id}/add_circuits/", json=chunk({"a": BELL, "b": BELL}, finalized=False)
    ) as r:
        assert r.status == 200
        assert await r.json() == {"job_id": job_id, "circuits_added": 2}
    record = server.job(job_id)
    assert record is not None
    assert record.status == "PENDING"
    assert not record.finalized
    assert record.labels == ("a", "b")
    async with http.post(f"job/{job_id}/add_circuits", json=chunk({"c": BELL})) as r:
        assert r.status == 200
    with anyio.fail_after(5):
        await server.wait_for_status(job_id, "COMPLETED")
    assert [r["label"] for r in await all_results(http, job_id)] == ["a", "b", "c"]
    assert server.stats.jobs_finalized == 1
    assert server.stats.jobs_completed == 1

    # Nothing can be added to a finalized job.
    async with http.post(f"job/{job_id}/add_circuits/", json=chunk({"d": BELL})) as r:
        assert r.status == 409
        assert "detail" in await r.json()


async def test_chunk_after_finalized_but_not_finished_is_409(make_scheduler: Factory) -> None:
    server = await make_scheduler(job_duration=60)
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        job_id = await submit(http, {"a": BELL})
        async with http.post(f"job/{job_id}/add_circuits/", json=chunk({"b": BELL})) as r:
            assert r.status == 409


async def test_duplicate_labels_are_refused(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    job_id = await new_job(http)
    async with http.post(
        f"job/{job_id}/add_circuits/", json=chunk({"a": BELL}, finalized=False)
    ) as r:
        assert r.status == 200
    async with http.post(f"job/{job_id}/add_circuits/", json=chunk({"a": BELL, "z": BELL})) as r:
        assert r.status == 400
        assert "'a'" in (await r.json())["detail"]
    record = server.job(job_id)
    assert record is not None
    assert record.labels == ("a",)
    assert not record.finalized


async def test_chunk_idempotency_key(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    job_id = await new_job(http)
    url = f"job/{job_id}/add_circuits/"
    first = chunk({"a": BELL, "b": BELL}, finalized=False)
    for _ in range(3):
        async with http.post(url, json=first, headers={"Idempotency-Key": "chunk-0"}) as r:
            assert r.status == 200
            assert await r.json() == {"job_id": job_id, "circuits_added": 2}
    last = chunk({"c": BELL})
    for _ in range(2):  # a repeated *final* chunk is not a 409 either
        async with http.post(url, json=last, headers={"Idempotency-Key": "chunk-1"}) as r:
            assert r.status == 200, await r.text()
    with anyio.fail_after(5):
        await server.wait_for_status(job_id, "COMPLETED")
    record = server.job(job_id)
    assert record is not None
    assert record.labels == ("a", "b", "c")
    assert server.stats.duplicate_chunks_refused == 3
    assert len(await all_results(http, job_id)) == 3


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON padded (with an ignored field) to exactly `size` bytes."""
    body = {**body, "padding": ""}
    raw = json.dumps(body).encode()
    body["padding"] = "x" * (size - len(raw))
    raw = json.dumps(body).encode()
    assert len(raw) == size
    return raw


async def test_payload_limit(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    job_id = await new_job(http)
    url = f"job/{job_id}/add_circuits/"
    headers = {"Content-Type": "application/json"}
    at_limit = padded(chunk({"a": BELL}, finalized=False), MAX_PAYLOAD_BYTES)
    async with http.post(url, data=at_limit, headers=headers) as r:  # at the limit: accepted
        assert r.status == 200, await r.text()
    over = padded(chunk({"b": BELL}, finalized=False), MAX_PAYLOAD_BYTES + 1)
    async with http.post(url, data=over, headers=headers) as r:
        assert r.status == 413
        assert "detail" in await r.json()
    async with http.post(url, data=b"x" * (2 * 1024 * 1024), headers=headers) as r:
        assert r.status == 413
    record = server.job(job_id)
    assert record is not None
    assert record.labels == ("a",)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([[0, 2, 10]], "cover"),  # gap
        ([[0, 2, 10], [1, 3, 10]], "overlap"),
        ([[0, 4, 10]], "goes past"),
        ([[0, 3, 0]], "positive"),
        ([[0, 3]], "[start, end, shots]"),
        ([[2, 1, 10], [0, 3, 5]], "overlap"),
        ([], "non-empty"),
        ("0-3", "non-empty"),
    ],
)
async def test_shot_groups_must_tile_the_chunk(
    http: aiohttp.ClientSession, groups: Any, message: str
) -> None:
    job_id = await new_job(http)
    body = chunk({"a": BELL, "b": BELL, "c": BELL}, shot_groups=groups)
    async with http.post(f"job/{job_id}/add_circuits/", json=body) as r:
        assert r.status == 400
        assert message in (await r.json())["detail"]


async def test_shot_groups_set_shots_per_circuit(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    circuits = {f"c{i}": BELL for i in range(4)}
    job_id = await submit(http, circuits, shot_groups=[[2, 4, 7], [0, 2, 300]])
    with anyio.fail_after(5):
        await server.wait_for_status(job_id, "COMPLETED")
    totals = [sum(decode_result(r["results"]).values()) for r in await all_results(http, job_id)]
    assert totals == [300, 300, 7, 7]


@pytest.mark.parametrize(
    "fields",
    [
        {"shots": 10, "shot_groups": [[0, 1, 10]]},
        {"shots": 10, "observables": "ZZ"},
        {"shots": 0},
        {"shots": -5},
        {"shots": True},
        {"shots": "100"},
        {"finalized": "yes"},
        {"mode": "replace"},
        {"circuits": {}},
        {"circuits": {"a": "not base64 !"}},
        {"circuits": {"a": base64.b64encode(b"not gzip").decode()}},
        {"circuits": ["a"]},
        {"observables": "ZZ"},  # an EXECUTE job
    ],
)
async def test_bad_chunks_are_400(
    http: aiohttp.ClientSession, server: LocalScheduler, fields: dict[str, Any]
) -> None:
    job_id = await new_job(http)
    body = chunk({"a": BELL}, shots=100)
    if {"shot_groups", "observables"} & set(fields) and "shots" not in fields:
        del body["shots"]
    body.update(fields)
    async with http.post(f"job/{job_id}/add_circuits/", json=body) as r:
        assert r.status == 400, await r.text()
        assert (await r.json())["detail"]
    record = server.job(job_id)
    assert record is not None
    assert record.labels == ()


async def test_chunk_without_allocation_is_400(http: aiohttp.ClientSession) -> None:
    job_id = await new_job(http)
    body = chunk({"a": BELL})
    del body["shots"]
    async with http.post(f"job/{job_id}/add_circuits/", json=body) as r:
        assert r.status == 400
        assert "exactly one" in (await r.json())["detail"]


async def test_invalid_qasm_names_label_line_and_column(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    job_id = await new_job(http)
    bad = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0]\ncx q[0],q[1];\n'
    async with http.post(
        f"job/{job_id}/add_circuits/", json=chunk({"fine": BELL, "broken": bad})
    ) as r:
        assert r.status == 400
        body = await r.json()
    assert body["label"] == "broken"
    assert isinstance(body["line"], int)
    assert isinstance(body["column"], int)
    assert "broken" in body["detail"]
    assert f"line {body['line']}" in body["detail"]
    record = server.job(job_id)
    assert record is not None
    assert record.labels == ()
    assert not record.finalized


# -- unknown jobs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "job/nope/add_circuits/"),
        ("GET", "job/nope/status/"),
        ("GET", "job/nope/status"),
        ("GET", "job/nope/resultsV2/?limit=10&offset=0"),
        ("POST", "job/nope/cancel/"),
        ("DELETE", "job/nope"),
        ("DELETE", "job/nope/"),
    ],
)
async def test_unknown_job_is_404(http: aiohttp.ClientSession, method: str, path: str) -> None:
    async with http.request(method, path, json=chunk({"a": BELL})) as r:
        assert r.status == 404
        assert (await r.json())["detail"] == "job not found"


# -- status/ and resultsV2/ ----------------------------------------------------------


async def test_status_and_results_lifecycle(make_scheduler: Factory) -> None:
    server = await make_scheduler(job_duration=60, max_concurrent_jobs=1)
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        job_id = await submit(http, {"a": BELL})
        with anyio.fail_after(5):
            await server.wait_for_status(job_id, "RUNNING")
        status = await status_of(http, job_id)
        assert status["status"] == "RUNNING"
        assert status["job_id"] == job_id
        assert "run_time" not in status
        async with http.get(f"job/{job_id}/resultsV2/?limit=10&offset=0") as r:
            assert r.status == 400
            assert "COMPLETED" in (await r.json())["detail"]


async def test_pagination(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    labels = [f"circuit-{i:03d}" for i in range(23)]
    job_id = await submit(http, dict.fromkeys(labels, BELL))
    with anyio.fail_after(5):
        await server.wait_for_status(job_id, "COMPLETED")
    status = await status_of(http, job_id)
    assert status["status"] == "COMPLETED"
    assert isinstance(status["run_time"], float)

    base = f"{server.base_url}job/{job_id}/resultsV2/"
    async with http.get(f"job/{job_id}/resultsV2/?limit=10&offset=0") as r:
        page = await r.json()
    assert page["count"] == 23
    assert page["previous"] is None
    assert page["next"] == f"{base}?limit=10&offset=10"
    assert [x["label"] for x in page["results"]] == labels[:10]

    async with http.get(page["next"]) as r:  # absolute URL on the server itself
        page = await r.json()
    assert page["previous"] == f"{base}?limit=10&offset=0"
    assert page["next"] == f"{base}?limit=10&offset=20"
    assert [x["label"] for x in page["results"]] == labels[10:20]

    async with http.get(page["next"]) as r:
        page = await r.json()
    assert page["next"] is None
    assert [x["label"] for x in page["results"]] == labels[20:]

    async with http.get(f"job/{job_id}/resultsV2/?limit=5&offset=3") as r:
        page = await r.json()
    assert page["previous"] == f"{base}?limit=5&offset=0"
    assert [x["label"] for x in page["results"]] == labels[3:8]

    async with http.get(f"job/{job_id}/resultsV2/?limit=10&offset=40") as r:
        page = await r.json()
    assert page == {
        "count": 23,
        "next": None,
        "previous": f"{base}?limit=10&offset=30",
        "results": [],
    }

    async with http.get(f"job/{job_id}/resultsV2") as r:  # defaults, no slash
        assert len((await r.json())["results"]) == 23

    assert [x["label"] for x in await all_results(http, job_id, limit=4)] == labels


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "offset=-1", "offset=1.5"])
async def test_bad_pagination_is_400(
    http: aiohttp.ClientSession, server: LocalScheduler, query: str
) -> None:
    job_id = await submit(http, {"a": BELL})
    with anyio.fail_after(5):
        await server.wait_for_status(job_id, "COMPLETED")
    async with http.get(f"job/{job_id}/resultsV2/?{query}") as r:
        assert r.status == 400


async def test_histograms_decode_and_sum_to_shots(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    circuits = {"bell": BELL, "ghz5": ghz(5), "wide": ghz(300)}
    job_id = await submit(http, circuits, shots=1234)
    with anyio.fail_after(10):
        await server.wait_for_status(job_id, "COMPLETED")
    results = {r["label"]: r["results"] for r in await all_results(http, job_id)}
    assert results["bell"]["encoding"] == "qh1"
    assert results["bell"]["n_bits"] == 2
    assert results["ghz5"]["n_bits"] == 5
    assert results["wide"]["encoding"] == "qh2"  # more than 255 bits
    assert results["wide"]["n_bits"] == 300
    for label, encoded in results.items():
        counts = decode_result(encoded)
        assert isinstance(counts, dict)
        assert sum(counts.values()) == 1234, label
        assert all(len(key) == encoded["n_bits"] for key in counts)
        assert all(count > 0 for count in counts.values())


async def test_expectation_jobs(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    def compress(group: str) -> str:
        terms = group.split(";")
        sparse = ["".join(f"{p}{i}" for i, p in enumerate(t) if p != "I") or "I" for t in terms]
        packed = base64.b64encode(gzip.compress(";".join(sparse).encode())).decode()
        return f"@gzs{len(terms[0])}:{packed}"

    job_id = await new_job(http, "EXPECTATION")
    url = f"job/{job_id}/add_circuits/"
    observables = compress("ZZ;XX") + "|" + compress("ZI;II")
    ham_map = [[0, 2], [2, 3]]
    first = chunk(
        {"a": BELL, "b": BELL}, finalized=False, observables=observables, circuit_ham_map=ham_map
    )
    second = chunk({"c": BELL, "d": BELL}, observables=observables, circuit_ham_map=ham_map)
    for body in (first, second):
        async with http.post(url, json=body) as r:
            assert r.status == 200, await r.text()
    with anyio.fail_after(5):
        await server.wait_for_status(job_id, "COMPLETED")
    results = {r["label"]: r["results"] for r in await all_results(http, job_id)}
    assert set(results["a"]) == set(results["b"]) == {"ZZ", "XX"}
    assert set(results["c"]) == {"ZI", "II"}  # index 2: the second group, by job position
    assert set(results["d"]) == {"ZZ", "XX", "ZI", "II"}  # outside every range: all groups
    assert results["c"]["II"] == 1.0
    for values in results.values():
        assert all(-1.0 <= v <= 1.0 for v in values.values())
        assert decode_result(values) == values  # no payload: passed through


@pytest.mark.parametrize(
    "fields",
    [
        {"observables": "@gzs2:not-base64"},
        {"observables": "Z0Z1"},
        {"observables": "ZZ;X"},
        {"observables": "ZZ", "circuit_ham_map": [[0, 1], [1, 2]]},
        {"observables": "ZZ", "circuit_ham_map": [[2, 1]]},
        {"shots": 100},
    ],
)
async def test_bad_expectation_chunks(http: aiohttp.ClientSession, fields: dict[str, Any]) -> None:
    job_id = await new_job(http, "EXPECTATION")
    body = chunk({"a": BELL}, **fields)
    async with http.post(f"job/{job_id}/add_circuits/", json=body) as r:
        assert r.status == 400, await r.text()


async def test_parametric_chunks_like_divi_sends(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    template = (
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
        "rx(theta) q[0];\nry(phi_1) q[1];\nmeasure q -> c;\n"
    )
    job_id = await new_job(http)
    body = {
        "circuit_template": pack(template),
        "parameter_names": ["theta", "phi_1"],
        "parameter_sets": [
            {"label": "p0", "values": [0.5, -1.25]},
            {"label": "p1", "values": [1, 2.0]},
        ],
        "mode": "append",
        "finalized": "true",
        "shots": 50,
    }
    async with http.post(f"job/{job_id}/add_circuits/", json=body) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["circuits_added"] == 2
    with anyio.fail_after(5):
        await server.wait_for_status(job_id, "COMPLETED")
    results = await all_results(http, job_id)
    assert [r["label"] for r in results] == ["p0", "p1"]
    assert all(sum(decode_result(r["results"]).values()) == 50 for r in results)


@pytest.mark.parametrize(
    ("template", "values", "reason"),
    [
        ("rx(theta) q[0];", [float("nan")], "not a finite number"),
        ("rx(theta) q[0];", [float("inf")], "not a finite number"),
        ("rx(theta) q[0];", ["0.5"], "not a finite number"),
        ("rx(theta) q[0];", [0.5, 1.0], "values for 1 parameters"),
        ("rx(theta, 2) q[0];", [0.5], "p0"),  # the template itself is invalid
    ],
)
async def test_bad_parametric_chunks(
    http: aiohttp.ClientSession, template: str, values: list[Any], reason: str
) -> None:
    source = f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[1];\n{template}\n'
    job_id = await new_job(http)
    body = {
        "circuit_template": pack(source),
        "parameter_names": ["theta"],
        # The bad row comes second: the scheduler checks the first row's circuit only.
        "parameter_sets": [{"label": "p0", "values": [0.1]}, {"label": "p1", "values": values}],
        "mode": "append",
        "finalized": "true",
        "shots": 50,
    }
    async with http.post(f"job/{job_id}/add_circuits/", json=body) as r:
        assert r.status == 400
        assert reason in await r.text()


# -- cancel/ and DELETE ---------------------------------------------------------------


async def test_cancel_pending_unfinalized_job(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    job_id = await new_job(http)
    async with http.post(
        f"job/{job_id}/add_circuits/", json=chunk({"a": BELL, "b": BELL}, finalized=False)
    ) as r:
        assert r.status == 200
    async with http.post(f"job/{job_id}/cancel/") as r:
        assert r.status == 200
        assert await r.json() == {"status": "cancelled", "job_id": job_id, "circuits_cancelled": 2}
    status = await status_of(http, job_id)
    assert status["status"] == "CANCELLED"
    assert status["run_time"] == 0.0
    async with http.post(f"job/{job_id}/cancel") as r:  # already terminal
        assert r.status == 409
        assert (await r.json())["status"] == "CANCELLED"
    async with http.post(f"job/{job_id}/add_circuits/", json=chunk({"c": BELL})) as r:
        assert r.status == 409
    async with http.get(f"job/{job_id}/resultsV2/") as r:
        assert r.status == 400
    assert server.stats.jobs_cancelled == 1


async def test_cancel_queued_and_running_jobs(make_scheduler: Factory) -> None:
    server = await make_scheduler(job_duration=60, max_concurrent_jobs=1)
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        running = await submit(http, {"a": BELL})
        queued = await submit(http, {"b": BELL})
        with anyio.fail_after(5):
            await server.wait_for_status(running, "RUNNING")
        assert (await status_of(http, queued))["status"] == "PENDING"  # only one slot

        async with http.post(f"job/{queued}/cancel/") as r:
            assert r.status == 200
        async with http.post(f"job/{running}/cancel/") as r:
            assert r.status == 200
            assert (await r.json())["circuits_cancelled"] == 1
        for job_id in (running, queued):
            assert (await status_of(http, job_id))["status"] == "CANCELLED"

        # The slot is free again: a new job runs.
        third = await submit(http, {"c": BELL})
        with anyio.fail_after(5):
            await server.wait_for_status(third, "RUNNING")


async def test_cancel_completed_job_is_409(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    job_id = await submit(http, {"a": BELL})
    with anyio.fail_after(5):
        await server.wait_for_status(job_id, "COMPLETED")
    async with http.post(f"job/{job_id}/cancel/") as r:
        assert r.status == 409
    assert (await status_of(http, job_id))["status"] == "COMPLETED"


async def test_delete(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    job_id = await submit(http, {"a": BELL})
    with anyio.fail_after(5):
        await server.wait_for_status(job_id)
    async with http.delete(f"job/{job_id}") as r:
        assert r.status == 204
        assert await r.read() == b""
    async with http.delete(f"job/{job_id}") as r:
        assert r.status == 404
    async with http.get(f"job/{job_id}/status/") as r:
        assert r.status == 404
    assert server.jobs() == []
    assert server.stats.jobs_deleted == 1


async def test_delete_running_job(make_scheduler: Factory) -> None:
    server = await make_scheduler(job_duration=60)
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        job_id = await submit(http, {"a": BELL})
        with anyio.fail_after(5):
            await server.wait_for_status(job_id, "RUNNING")
        async with http.delete(f"job/{job_id}/") as r:
            assert r.status == 204
        assert server.jobs() == []
