"""Starting, stopping, restarting, threads, the queue, and the pytest fixtures."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import anyio
import pytest

from asyncjob.local import FaultConfig, LocalScheduler, ThreadedScheduler

from .conftest import BELL, Factory, all_results, chunk, submit


def auth(scheduler: LocalScheduler | ThreadedScheduler) -> dict[str, str]:
    return {"Authorization": f"Bearer {scheduler.token}"}


async def test_context_manager_and_repr() -> None:
    async with LocalScheduler(token="secret-xyz", port=0, executor="sampler") as scheduler:
        assert scheduler.running
        assert scheduler.token == "secret-xyz"
        assert scheduler.port > 0
        assert scheduler.base_url == f"http://127.0.0.1:{scheduler.port}/api/"
        assert "serving" in repr(scheduler)
        assert "secret-xyz" not in repr(scheduler)
        with pytest.raises(RuntimeError):
            await scheduler.start()
    assert not scheduler.running
    await scheduler.stop()  # idempotent


async def test_restart_on_the_same_port_keeps_jobs(make_scheduler: Factory) -> None:
    server = await make_scheduler(job_duration=0.2)
    port = server.port
    async with aiohttp.ClientSession(server.base_url, headers=auth(server)) as http:
        done = await submit(http, {"a": BELL})
        with anyio.fail_after(5):
            await server.wait_for_status(done, "COMPLETED")
        in_flight = await submit(http, {"b": BELL, "c": BELL})
        with anyio.fail_after(5):
            await server.wait_for_status(in_flight, "RUNNING")

        await server.stop()
        assert server.job(in_flight).status == "PENDING"  # type: ignore[union-attr]
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get("") as r:
                await r.read()

        await server.start()
        assert server.port == port
        async with http.get("") as r:
            assert r.status == 200
        with anyio.fail_after(5):
            await server.wait_for_status(in_flight, "COMPLETED")
        assert [r["label"] for r in await all_results(http, in_flight)] == ["b", "c"]
        assert [r["label"] for r in await all_results(http, done)] == ["a"]


async def test_port_in_use(make_scheduler: Factory) -> None:
    first = await make_scheduler()
    with pytest.raises(OSError):
        await make_scheduler(port=first.port)


def test_non_loopback_needs_allow_remote_and_token() -> None:
    with pytest.raises(ValueError, match="allow_remote"):
        LocalScheduler(token="t", host="0.0.0.0", executor="sampler")
    with pytest.raises(ValueError, match="token"):
        LocalScheduler(host="0.0.0.0", allow_remote=True, executor="sampler")
    scheduler = LocalScheduler(token="t", host="0.0.0.0", allow_remote=True, executor="sampler")
    assert not scheduler.running  # constructed, not started: tests bind only 127.0.0.1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_concurrent_jobs": 0},
        {"job_duration": -1},
        {"job_duration": (2.0, 1.0)},
        {"executor": "nope"},
    ],
)
def test_bad_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LocalScheduler(**kwargs)


async def test_max_concurrent_jobs(make_scheduler: Factory) -> None:
    server = await make_scheduler(job_duration=60, max_concurrent_jobs=2)
    async with aiohttp.ClientSession(server.base_url, headers=auth(server)) as http:
        ids = [await submit(http, {"a": BELL}) for _ in range(3)]
        with anyio.fail_after(5):
            await server.wait_for_status(ids[0], "RUNNING")
            await server.wait_for_status(ids[1], "RUNNING")
        assert server.job(ids[2]).status == "PENDING"  # type: ignore[union-attr]
        async with http.post(f"job/{ids[0]}/cancel/") as r:
            assert r.status == 200
        with anyio.fail_after(5):
            await server.wait_for_status(ids[2], "RUNNING")


async def test_random_job_durations(make_scheduler: Factory) -> None:
    # With seed 15 the first job draws ~0.48 s and the second ~0.02 s: it finishes first.
    server = await make_scheduler(job_duration=(0.01, 0.5), seed=15, max_concurrent_jobs=8)
    async with aiohttp.ClientSession(server.base_url, headers=auth(server)) as http:
        ids = [await submit(http, {"a": BELL}) for _ in range(6)]
        order: list[str] = []

        def all_done() -> bool:
            for record in server.jobs():
                if record.status == "COMPLETED" and record.id not in order:
                    order.append(record.id)
            return len(order) == len(ids)

        with anyio.fail_after(10):
            await server.wait_until(all_done)
    run_times = [server.job(i).run_time for i in ids]  # type: ignore[union-attr]
    assert all(t is not None and t >= 0.01 for t in run_times)
    assert len(set(run_times)) == len(ids)
    assert order[0] != ids[0]  # finished in another order than submitted


async def test_job_records_carry_the_finish_time(make_scheduler: Factory) -> None:
    server = await make_scheduler(job_duration=60)
    async with aiohttp.ClientSession(server.base_url, headers=auth(server)) as http:
        before = time.time()
        job_id = await submit(http, {"a": BELL})
        with anyio.fail_after(5):
            await server.wait_for_status(job_id, "RUNNING")
        assert server.job(job_id).finished_at is None  # type: ignore[union-attr]
        async with http.post(f"job/{job_id}/cancel/") as r:
            assert r.status == 200
    finished = server.job(job_id).finished_at  # type: ignore[union-attr]
    assert finished is not None and before <= finished <= time.time()
    assert [r.finished_at for r in server.jobs()] == [finished]


async def test_unfinalized_jobs_stay_pending(make_scheduler: Factory) -> None:
    server = await make_scheduler()
    async with aiohttp.ClientSession(server.base_url, headers=auth(server)) as http:
        async with http.post("job/init/", json={"job_type": "EXECUTE"}) as r:
            job_id = (await r.json())["job_id"]
        async with http.post(
            f"job/{job_id}/add_circuits/", json=chunk({"a": BELL}, finalized=False)
        ) as r:
            assert r.status == 200
        finished = await submit(http, {"b": BELL})
        with anyio.fail_after(5):
            await server.wait_for_status(finished, "COMPLETED")
        assert server.job(job_id).status == "PENDING"  # type: ignore[union-attr]


# -- threaded mode -------------------------------------------------------------------


def request(
    scheduler: ThreadedScheduler, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        scheduler.base_url + path,
        data=data,
        method=method,
        headers={**auth(scheduler), "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_threaded_mode() -> None:
    with LocalScheduler(
        token="tt", job_duration=0.01, executor="sampler"
    ).run_in_thread() as threaded:
        assert isinstance(threaded, ThreadedScheduler)
        assert request(threaded, "GET", "")[0] == 200
        status, body = request(threaded, "POST", "job/init/", {"job_type": "EXECUTE"})
        assert status == 201
        job_id = body["job_id"]
        status, _ = request(threaded, "POST", f"job/{job_id}/add_circuits/", chunk({"a": BELL}))
        assert status == 200
        assert threaded.wait_for_status(job_id, "COMPLETED", timeout=5).status == "COMPLETED"
        status, page = request(threaded, "GET", f"job/{job_id}/resultsV2/?limit=10&offset=0")
        assert (status, page["count"]) == (200, 1)
        stats = threaded.stats  # read from this thread
        assert stats.jobs_completed == 1
        assert stats.requests_by_endpoint["results"] == 1
        assert [r.id for r in threaded.jobs()] == [job_id]

        threaded.faults = FaultConfig(rate_limit_rate=1.0)
        assert request(threaded, "GET", "")[0] == 429
        threaded.faults = FaultConfig()

        port = threaded.port
        threaded.restart()
        assert threaded.port == port
        assert request(threaded, "GET", f"job/{job_id}/status/")[1]["status"] == "COMPLETED"
    assert not any(t.name == "asyncjob-local-scheduler" for t in threading.enumerate())


def test_threaded_stop_cancels_what_is_left_on_the_loop() -> None:
    with LocalScheduler(token="t", executor="sampler").run_in_thread() as threaded:
        never = threading.Event()

        async def forever() -> None:
            await threaded.scheduler.wait_until(never.is_set)

        with pytest.raises(TimeoutError):
            threaded.call(forever, timeout=0.01)
    # Leaving the block returned: the call still waiting was cancelled, the thread joined.
    assert not threaded.scheduler.running
    assert not any(t.name == "asyncjob-local-scheduler" for t in threading.enumerate())


def test_threaded_start_failure_is_raised() -> None:
    with LocalScheduler(token="t", executor="sampler").run_in_thread() as first:
        second = LocalScheduler(token="t", port=first.port, executor="sampler").run_in_thread()
        with pytest.raises(OSError):
            second.start()
    assert not any(t.name == "asyncjob-local-scheduler" for t in threading.enumerate())


# -- the pytest plugin's fixtures ------------------------------------------------------


async def test_local_scheduler_fixture(local_scheduler: LocalScheduler) -> None:
    assert local_scheduler.running
    assert local_scheduler.executor.name == "sampler"
    async with aiohttp.ClientSession(
        local_scheduler.base_url, headers=auth(local_scheduler)
    ) as http:
        job_id = await submit(http, {"a": BELL})
        with anyio.fail_after(5):
            record = await local_scheduler.wait_for_status(job_id)
    assert record.status == "COMPLETED"


def test_local_scheduler_thread_fixture(local_scheduler_thread: ThreadedScheduler) -> None:
    assert request(local_scheduler_thread, "GET", "qpusystem/")[0] == 200
    assert local_scheduler_thread.stats.requests_total == 1


def test_testing_module_is_import_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, asyncjob.testing; "
        "print(sorted(m for m in ('aiohttp.web', 'asyncjob.local', 'qiskit') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"
