"""Every fault option, observed at the HTTP level, and seeded replay of fault sequences."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest

from asyncjob.local import FaultConfig, FaultEvent, LocalScheduler

from .conftest import BELL, Factory, chunk, new_job, submit


@pytest.fixture
async def fresh(server: LocalScheduler) -> AsyncIterator[aiohttp.ClientSession]:
    """A session that opens a new connection per request (no silent keep-alive retries)."""
    async with aiohttp.ClientSession(
        server.base_url,
        headers={"Authorization": f"Bearer {server.token}"},
        connector=aiohttp.TCPConnector(force_close=True),
    ) as session:
        yield session


async def test_no_faults_by_default(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    assert server.faults == FaultConfig()
    for _ in range(20):
        async with http.get("") as r:
            assert r.status == 200
    assert server.stats.faults_injected == {}
    assert server.fault_log == []


async def test_error_rate_gives_proxy_html(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(error_rate=1.0, seed=1)
    seen = set()
    for _ in range(12):
        async with http.get("") as r:
            seen.add(r.status)
            assert r.content_type == "text/html"
            text = await r.text()
            assert text.lstrip().startswith("<html>")
            assert str(r.status) in text
    assert seen == {502, 503}
    assert server.stats.faults_injected == {"error": 12}
    server.faults = FaultConfig()
    async with http.get("") as r:
        assert r.status == 200


async def test_error_before_processing_changes_nothing(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(error_rate=1.0, only=("init",))
    async with http.post("job/init/", json={"job_type": "EXECUTE"}) as r:
        assert r.status in (502, 503)
    assert server.jobs() == []


async def test_error_after_processing_loses_the_response(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(error_rate=1.0, error_when="after", only=("init",), max_faults=1)
    headers = {"Idempotency-Key": "key-1"}
    async with http.post("job/init/", json={"job_type": "EXECUTE"}, headers=headers) as r:
        assert r.status in (502, 503)
    assert len(server.jobs()) == 1  # created, though the client never heard of it
    async with http.post("job/init/", json={"job_type": "EXECUTE"}, headers=headers) as r:
        assert r.status == 200  # the retry finds the job the lost response was about
        assert (await r.json())["job_id"] == server.jobs()[0].id
    assert server.stats.duplicate_inits_refused == 1
    assert server.stats.jobs_created == 1


async def test_rate_limit_has_retry_after(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(rate_limit_rate=1.0, retry_after=0.05)
    async with http.get("") as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "0.05"
        assert "detail" in await r.json()
    server.faults = FaultConfig(rate_limit_rate=1.0, retry_after=2)
    async with http.post("job/init/", json={}) as r:
        assert r.status == 429
        assert r.headers["Retry-After"] == "2"
    assert server.jobs() == []  # rate limiting strikes before processing
    server.faults = FaultConfig(rate_limit_rate=1.0, retry_after=0)
    async with http.get("") as r:
        assert r.headers["Retry-After"] == "0"
    assert server.stats.faults_injected == {"rate_limit": 3}


async def test_reset_is_a_connection_error(
    fresh: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(reset_rate=1.0)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with fresh.get("qpusystem/") as r:
            await r.read()
    assert server.stats.faults_injected["reset"] >= 1


async def test_reset_after_init_leaves_the_job_behind(
    fresh: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(reset_rate=1.0, only=("init", "add_circuits"), max_faults=2)
    headers = {"Idempotency-Key": "init-key"}
    with pytest.raises(aiohttp.ClientConnectionError):
        async with fresh.post("job/init/", json={"job_type": "EXECUTE"}, headers=headers) as r:
            await r.read()
    (job,) = server.jobs()  # reset_when defaults to "after": the state changed
    url = f"job/{job.id}/add_circuits/"
    with pytest.raises(aiohttp.ClientConnectionError):
        async with fresh.post(url, json=chunk({"a": BELL}), headers={"Idempotency-Key": "c0"}):
            pass
    assert server.job(job.id).labels == ("a",)  # type: ignore[union-attr]

    # Retries with the same keys are recognised: no second job, no second copy.
    async with fresh.post("job/init/", json={"job_type": "EXECUTE"}, headers=headers) as r:
        assert (await r.json())["job_id"] == job.id
    async with fresh.post(url, json=chunk({"a": BELL}), headers={"Idempotency-Key": "c0"}) as r:
        assert r.status == 200
    assert server.job(job.id).labels == ("a",)  # type: ignore[union-attr]
    stats = server.stats
    assert (stats.duplicate_inits_refused, stats.duplicate_chunks_refused) == (1, 1)
    assert stats.faults_injected == {"reset": 2}


async def test_reset_before_processing(
    fresh: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(reset_rate=1.0, reset_when="before", only=("init",))
    with pytest.raises(aiohttp.ClientConnectionError):
        async with fresh.post("job/init/", json={"job_type": "EXECUTE"}):
            pass
    assert server.jobs() == []


async def test_hang_times_out_the_client(
    fresh: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(hang_rate=1.0, only=("status",))
    job_id = await new_job(fresh)
    with pytest.raises(asyncio.TimeoutError):
        async with fresh.get(
            f"job/{job_id}/status/", timeout=aiohttp.ClientTimeout(total=0.2)
        ) as r:
            await r.read()
    assert server.stats.faults_injected == {"hang": 1}


async def test_hang_after_processing_answers_late(
    fresh: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(hang_rate=1.0, hang_time=0.3, hang_when="after", only=("init",))
    started = time.monotonic()
    async with fresh.post("job/init/", json={"job_type": "EXECUTE"}) as r:
        assert r.status == 201
    assert time.monotonic() - started >= 0.3


async def test_stop_releases_hung_requests(make_scheduler: Factory) -> None:
    server = await make_scheduler(faults=FaultConfig(hang_rate=1.0))
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:

        async def hung() -> BaseException | None:
            try:
                async with http.get("") as r:
                    await r.read()
            except aiohttp.ClientError as exc:
                return exc
            return None

        request = asyncio.create_task(hung())
        with anyio.fail_after(5):
            await server.wait_until(lambda: server.stats.faults_injected.get("hang") == 1)
        with anyio.fail_after(5):  # far less than hang_time (an hour)
            await server.stop()
            assert isinstance(await request, aiohttp.ClientError)


async def test_truncated_body_is_a_payload_error(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(truncate_rate=1.0, only=("simulatorcluster",))
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.get("simulatorcluster/") as r:
            assert r.status == 200
            assert int(r.headers["Content-Length"]) > 0
            await r.read()
    assert server.stats.faults_injected == {"truncate": 1}


async def test_slow_body_arrives_in_pieces(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(slow_body=0.02, slow_body_piece=8, only=("simulatorcluster",))
    started = time.monotonic()
    async with http.get("simulatorcluster/") as r:
        body = b""
        pieces = 0
        async for data in r.content.iter_any():
            body += data
            pieces += 1
    elapsed = time.monotonic() - started
    expected = [{"name": "qoro_maestro", "access_level": "PUBLIC", "minimum_tier": "FREE"}]
    import json

    assert json.loads(body) == expected
    n_pieces = -(-len(body) // 8)
    assert elapsed >= (n_pieces - 1) * 0.02
    assert pieces > 1


async def test_latency_delays_every_request(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(latency=0.15)
    started = time.monotonic()
    async with http.get("") as r:
        assert r.status == 200
    assert time.monotonic() - started >= 0.15
    server.faults = FaultConfig(latency=(0.05, 0.1))
    started = time.monotonic()
    async with http.get("") as r:
        assert r.status == 200
    assert time.monotonic() - started >= 0.05


async def test_fail_rate_fails_jobs(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    server.faults = FaultConfig(fail_rate=1.0)
    job_id = await submit(http, {"a": BELL})
    with anyio.fail_after(5):
        record = await server.wait_for_status(job_id)
    assert record.status == "FAILED"
    async with http.get(f"job/{job_id}/status/") as r:
        status = await r.json()
    assert status["status"] == "FAILED"
    assert "fail_rate" in status["error"]
    assert isinstance(status["run_time"], float)
    async with http.get(f"job/{job_id}/resultsV2/") as r:
        assert r.status == 400
    stats = server.stats
    assert (stats.jobs_failed, stats.jobs_completed) == (1, 0)
    assert stats.faults_injected == {"fail": 1}
    assert server.fault_log == [FaultEvent(-1, "job", "fail", "after", job_id)]


async def test_only_restricts_faults_to_endpoints(
    http: aiohttp.ClientSession, server: LocalScheduler
) -> None:
    server.faults = FaultConfig(error_rate=1.0, only=("status",))
    job_id = await submit(http, {"a": BELL})  # init and add_circuits are spared
    async with http.get(f"job/{job_id}/status/") as r:
        assert r.status in (502, 503)
    async with http.get("") as r:
        assert r.status == 200
    assert [e.endpoint for e in server.fault_log] == ["status"]
    assert server.stats.requests_by_endpoint["status"] == 1


async def test_max_faults(http: aiohttp.ClientSession, server: LocalScheduler) -> None:
    server.faults = FaultConfig(error_rate=1.0, max_faults=2)
    statuses = []
    for _ in range(4):
        async with http.get("") as r:
            statuses.append(r.status)
    assert statuses[2:] == [200, 200]
    assert all(s in (502, 503) for s in statuses[:2])


async def statuses_under(server: LocalScheduler, config: FaultConfig, n: int) -> list[int]:
    server.faults = config
    statuses = []
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as http:
        for _ in range(n):
            async with http.get("") as r:
                statuses.append(r.status)
    return statuses


async def test_seeded_replay(make_scheduler: Factory) -> None:
    config = FaultConfig(seed=1234, error_rate=0.3, rate_limit_rate=0.2, retry_after=0)
    first_server = await make_scheduler()
    second_server = await make_scheduler()
    first = await statuses_under(first_server, config, 60)
    second = await statuses_under(second_server, config, 60)
    assert first == second
    assert {200, 429} <= set(first)
    assert set(first) & {502, 503}
    assert first_server.fault_log == second_server.fault_log
    # Setting the same config again restarts the sequence.
    assert await statuses_under(first_server, config, 60) == first
    # Another seed gives another sequence.
    other = await statuses_under(
        first_server, FaultConfig(seed=99, error_rate=0.3, rate_limit_rate=0.2), 60
    )
    assert other != first


async def test_seeded_job_failures_replay(make_scheduler: Factory) -> None:
    outcomes = []
    for _ in range(2):
        server = await make_scheduler(faults=FaultConfig(seed=5, fail_rate=0.5))
        async with aiohttp.ClientSession(
            server.base_url, headers={"Authorization": f"Bearer {server.token}"}
        ) as http:
            ids = [await submit(http, {"a": BELL}) for _ in range(16)]
            with anyio.fail_after(10):
                records = [await server.wait_for_status(job_id) for job_id in ids]
        outcomes.append([r.status for r in records])
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {"COMPLETED", "FAILED"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_rate": 1.5},
        {"reset_rate": -0.1},
        {"error_rate": 0.6, "reset_rate": 0.6},
        {"only": ("nope",)},
        {"error_when": "during"},
        {"latency": -1},
        {"latency": (0.5, 0.1)},
        {"max_faults": -1},
        {"hang_time": -1},
    ],
)
def test_fault_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultConfig(**kwargs)  # type: ignore[arg-type]


def test_fault_config_is_frozen() -> None:
    config = FaultConfig(only=["status", "results"])  # type: ignore[arg-type]
    assert config.only == ("status", "results")
    assert config.applies_to("status")
    assert not config.applies_to("init")
    with pytest.raises(AttributeError):
        config.error_rate = 1.0  # type: ignore[misc]
