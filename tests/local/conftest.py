"""Fixtures for the local scheduler tests: a server, a raw HTTP session and packers."""

from __future__ import annotations

import base64
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import pytest

from asyncjob.local import LocalScheduler
from asyncjob.testing import local_scheduler, local_scheduler_thread

from ..conftest import BELL

__all__ = ["BELL", "local_scheduler", "local_scheduler_thread"]

TOKEN = "local-test-token"


BELL3 = """OPENQASM 3.0;
include "stdgates.inc";
qubit[2] q;
bit[2] c;
h q[0];
cx q[0], q[1];
c = measure q;
"""


def pack(source: str) -> str:
    """The wire form of a circuit: base64(gzip(utf-8))."""
    return base64.b64encode(gzip.compress(source.encode("utf-8"))).decode("ascii")


def ghz(n: int) -> str:
    """An n-qubit GHZ circuit in OpenQASM 2 measuring every qubit."""
    lines = ["OPENQASM 2.0;", 'include "qelib1.inc";', f"qreg q[{n}];", f"creg c[{n}];", "h q[0];"]
    lines += [f"cx q[{i}],q[{i + 1}];" for i in range(n - 1)]
    lines.append("measure q -> c;")
    return "\n".join(lines) + "\n"


def chunk(circuits: dict[str, str], *, finalized: bool = True, **fields: Any) -> dict[str, Any]:
    """An add_circuits/ body; `shots=100` unless another allocation is given."""
    body: dict[str, Any] = {
        "circuits": {label: pack(src) for label, src in circuits.items()},
        "mode": "append",
        "finalized": "true" if finalized else "false",
    }
    if not {"shots", "shot_groups", "observables"} & set(fields):
        body["shots"] = 100
    body.update(fields)
    return body


Factory = Callable[..., Awaitable[LocalScheduler]]


@pytest.fixture
async def make_scheduler() -> AsyncIterator[Factory]:
    """Start schedulers with custom options; all are stopped at the end of the test."""
    started: list[LocalScheduler] = []

    async def make(**options: Any) -> LocalScheduler:
        options.setdefault("token", TOKEN)
        options.setdefault("executor", "sampler")
        scheduler = LocalScheduler(**options)
        await scheduler.start()
        started.append(scheduler)
        return scheduler

    yield make
    for scheduler in started:
        await scheduler.stop()


@pytest.fixture
async def server(make_scheduler: Factory) -> LocalScheduler:
    """A sampler scheduler whose jobs take no time."""
    return await make_scheduler()


@pytest.fixture
async def http(server: LocalScheduler) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session on the server's base URL, with the bearer token."""
    async with aiohttp.ClientSession(
        server.base_url, headers={"Authorization": f"Bearer {server.token}"}
    ) as session:
        yield session


async def new_job(http: aiohttp.ClientSession, job_type: str = "EXECUTE", **fields: Any) -> str:
    """POST job/init/ and return the job id."""
    body = {"tag": "test", "job_type": job_type, "simulator_cluster": "qoro_maestro", **fields}
    async with http.post("job/init/", json=body) as response:
        assert response.status == 201, await response.text()
        job_id: str = (await response.json())["job_id"]
        return job_id


async def submit(
    http: aiohttp.ClientSession, circuits: dict[str, str], job_type: str = "EXECUTE", **fields: Any
) -> str:
    """Create a job and upload `circuits` as one finalized chunk (`fields` go in the chunk)."""
    job_id = await new_job(http, job_type)
    async with http.post(f"job/{job_id}/add_circuits/", json=chunk(circuits, **fields)) as r:
        assert r.status == 200, await r.text()
    return job_id


async def completed_results(
    server: LocalScheduler, http: aiohttp.ClientSession, job_id: str
) -> list[Any]:
    """Every result of the job, once it has COMPLETED (within 60 s)."""
    with anyio.fail_after(60):
        record = await server.wait_for_status(job_id)
    assert record.status == "COMPLETED", record.error
    return await all_results(http, job_id)


async def all_results(http: aiohttp.ClientSession, job_id: str, limit: int = 100) -> list[Any]:
    """Every result of a completed job, following `next`."""
    results: list[Any] = []
    url = f"job/{job_id}/resultsV2/?limit={limit}&offset=0"
    while url:
        async with http.get(url) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        results += page["results"]
        url = page["next"]
    return results
