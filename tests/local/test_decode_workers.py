"""`LocalScheduler(decode_workers=N)`: chunks unpacked and checked in worker processes."""

from __future__ import annotations

import os
import signal
from typing import Any

import aiohttp
import pytest

from asyncjob import AsyncJobClient, JobStatus, Limits
from asyncjob.local import LocalScheduler

from .conftest import BELL, TOKEN, Factory, chunk, new_job


def circuits(n: int) -> dict[str, str]:
    return {
        f"c{i:03d}": BELL.replace("h q[0];", f"h q[0];\nrx({i / 100}) q[1];") for i in range(n)
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def http(server: LocalScheduler) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    )


async def test_chunks_are_decoded_in_the_workers(
    make_scheduler: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await make_scheduler(decode_workers=2)
    assert len(server.decode_worker_pids) == 2
    assert os.getpid() not in server.decode_worker_pids

    def not_here(packed: Any) -> Any:
        raise AssertionError("decoded in the scheduler's own process")

    # Worker processes have their own copy of the module: only they can decode now.
    monkeypatch.setattr("asyncjob.local._decode.decode", not_here)
    batch = circuits(300)
    limits = Limits(chunk_bytes=8_000)
    async with AsyncJobClient(server.base_url, TOKEN, limits=limits) as client:
        result = await client.run(batch)
    assert result.results is not None
    assert [r["label"] for r in result.results] == list(batch)
    record = server.job(str(result.job_id))
    assert record is not None and record.status == JobStatus.COMPLETED.value
    assert server.stats.requests_by_endpoint["add_circuits"] > 3


async def test_a_bad_circuit_is_a_400_naming_it(make_scheduler: Factory) -> None:
    server = await make_scheduler(decode_workers=1)
    bad = 'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0]\ncx q[0],q[1];\n'
    async with http(server) as session:
        job_id = await new_job(session)
        path = f"job/{job_id}/add_circuits/"
        async with session.post(path, json=chunk({"fine": BELL, "broken": bad})) as r:
            assert r.status == 400
            body = await r.json()
        assert (body["label"], body["line"]) == ("broken", 5)
        assert "broken" in body["detail"]
        garbled = {**chunk({"a": BELL}), "circuits": {"a": "not base64!"}}
        async with session.post(path, json=garbled) as r:
            assert r.status == 400
            assert "not base64(gzip" in (await r.json())["detail"]
    record = server.job(job_id)
    assert record is not None and record.labels == () and not record.finalized


async def test_dead_workers_fall_back_to_a_thread(make_scheduler: Factory) -> None:
    server = await make_scheduler(decode_workers=1)
    (pid,) = server.decode_worker_pids
    os.kill(pid, signal.SIGKILL)
    async with AsyncJobClient(server.base_url, TOKEN) as client:
        result = await client.run(circuits(20))
    assert result.results is not None and len(result.results) == 20
    assert server.decode_worker_pids == ()


async def test_stop_ends_the_workers_and_start_brings_new_ones() -> None:
    server = LocalScheduler(token=TOKEN, decode_workers=1, executor="sampler")
    await server.start()
    (first,) = server.decode_worker_pids
    await server.stop()
    assert server.decode_worker_pids == ()
    assert not alive(first)
    await server.start()
    try:
        (second,) = server.decode_worker_pids
        assert second != first and alive(second)
        async with AsyncJobClient(server.base_url, TOKEN) as client:
            result = await client.run(circuits(5))
        assert result.results is not None and len(result.results) == 5
    finally:
        await server.stop()


def test_negative_workers_are_refused() -> None:
    with pytest.raises(ValueError, match="decode_workers"):
        LocalScheduler(decode_workers=-1, executor="sampler")
