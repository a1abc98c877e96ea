"""The transport seam, the retry policy and the client's lifecycle, through `MockTransport`.

`MockTransport` stands in for the network here, not for the code under test:
retries, timeouts, error mapping and closing all run for real above it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gc
import importlib.metadata
import json
import logging
import re
import warnings
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from yarl import URL

import asyncjob
from asyncjob import (
    AsyncJobClient,
    AsyncJobError,
    ClientClosedError,
    ConnectionFailedError,
    JobStatus,
    MockTransport,
    PollingPolicy,
    RateLimitedError,
    Request,
    RequestTimeoutError,
    Response,
    RetryPolicy,
    ServerError,
    Timeout,
)
from asyncjob._retry import idempotent, parse_retry_after, should_retry
from asyncjob._version import DISTRIBUTION
from asyncjob.local import LocalScheduler

from .conftest import BASE, BELL, TOKEN, fast_retry


def json_response(data: Any, status: int = 200, **headers: str) -> Response:
    return Response(status, headers=headers, text=json.dumps(data))


def replies(*answers: Response | Exception) -> Callable[[Request], Response]:
    """A handler giving `answers` in turn, then repeating the last one."""
    queue = list(answers)

    def handler(request: Request) -> Response:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


def client_with(
    handler: Callable[[Request], Any], retry: RetryPolicy | None = None, **options: Any
) -> tuple[AsyncJobClient, MockTransport]:
    transport = MockTransport(handler)
    client = AsyncJobClient(
        BASE,
        TOKEN,
        transport=transport,
        retry=retry or fast_retry(),
        polling=PollingPolicy(interval=0.001, watch=False),
        **options,
    )
    return client, transport


# -- the seam ------------------------------------------------------------------------------


async def test_a_mock_transport_serves_a_whole_run() -> None:
    jobs: dict[str, list[str]] = {}

    def scheduler(request: Request) -> Response:
        body = json.loads(request.body) if request.body else None
        path = request.path.removeprefix("/api/")
        if path == "job/init/":
            jobs["j1"] = []
            return json_response({"job_id": "j1"}, 201)
        if path == "job/j1/add_circuits/":
            jobs["j1"] += list(body["circuits"])
            return json_response({"job_id": "j1", "circuits_added": len(body["circuits"])})
        if path == "job/j1/status/":
            return json_response({"status": "COMPLETED"})
        if path == "job/j1/resultsV2/":
            results = [{"label": label, "results": {"value": 1}} for label in jobs["j1"]]
            return json_response({"count": len(results), "next": None, "results": results})
        return json_response({"detail": "no such endpoint"}, 404)

    client, transport = client_with(scheduler)
    async with client:
        result = await client.run({"a": BELL, "b": BELL})
    assert result.results == [
        {"label": "a", "results": {"value": 1}},
        {"label": "b", "results": {"value": 1}},
    ]
    methods = [(r.method, r.path) for r in transport.requests]
    assert methods[0] == ("POST", "/api/job/init/")
    assert methods[-1] == ("GET", "/api/job/j1/resultsV2/")
    first = transport.requests[0]
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.headers["User-Agent"] == f"asyncjob/{asyncjob.__version__}"
    assert TOKEN not in repr(first)


async def test_query_parameters_join_the_url_and_keep_a_query_already_there() -> None:
    client, transport = client_with(lambda request: json_response({}))
    async with client:
        sender = client._ctx.sender
        await sender.request("GET", "job/j%2F1/resultsV2/", params={"limit": 100, "offset": 0})
        await sender.request("GET", "job/j1/resultsV2/?cursor=a%20b", params={"limit": 5})
    first, second = (URL(r.url, encoded=True) for r in transport.requests)
    assert str(first) == f"{BASE}job/j%2F1/resultsV2/?limit=100&offset=0"
    assert dict(second.query) == {"cursor": "a b", "limit": "5"}


async def test_each_request_carries_only_its_own_headers() -> None:
    client, transport = client_with(lambda request: json_response({}))
    async with client:
        sender = client._ctx.sender
        await sender.request("POST", "job/init/", body={"a": 1}, idempotency_key="k1")
        await sender.request("POST", "job/init/", body={"a": 2})
        await sender.request("GET", "job/j1/status/")
    keyed, unkeyed, get = (dict(r.headers) for r in transport.requests)
    assert keyed["Idempotency-Key"] == "k1" and keyed["Content-Type"] == "application/json"
    assert "Idempotency-Key" not in unkeyed and unkeyed["Content-Type"] == "application/json"
    assert "Idempotency-Key" not in get and "Content-Type" not in get
    assert {h["Authorization"] for h in (keyed, unkeyed, get)} == {f"Bearer {TOKEN}"}


async def test_an_async_handler_is_awaited() -> None:
    async def handler(request: Request) -> Response:
        await anyio.lowlevel.checkpoint()
        return json_response({"status": "RUNNING"})

    client, _ = client_with(handler)
    async with client:
        assert await client.poll_job_status("j1") is JobStatus.RUNNING


async def test_the_request_timeout_bounds_any_transport() -> None:
    async def handler(request: Request) -> Response:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    client, transport = client_with(handler, RetryPolicy.off(), timeout=Timeout(request=0.05))
    async with client:
        with pytest.raises(RequestTimeoutError, match=r"timed out after 0\.05 s"):
            await client.poll_job_status("j1")
    assert len(transport.requests) == 1


async def test_a_cancellation_due_in_the_same_turn_as_the_request_timeout_wins() -> None:
    """Both deadlines pass while the loop is busy: the caller's scope is what ended the wait."""
    import time

    async def handler(request: Request) -> Response:
        await anyio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def busy_loop() -> None:
        await anyio.sleep(0.01)
        time.sleep(0.5)  # noqa: ASYNC251 - blocks the loop while both deadlines below pass

    client, _ = client_with(handler, RetryPolicy.off(), timeout=Timeout(request=0.2))
    async with client, anyio.create_task_group() as tg:
        tg.start_soon(busy_loop)
        with anyio.move_on_after(0.21) as scope:
            await client.get_status("j1")
    assert scope.cancelled_caught


async def test_closing_the_client_closes_its_transport() -> None:
    closed: list[bool] = []

    class Recording(MockTransport):
        async def aclose(self) -> None:
            closed.append(True)

    client = AsyncJobClient(BASE, TOKEN, transport=Recording(replies(json_response({}))))
    async with client:
        pass
    assert closed == [True]
    assert client.is_closed


# -- what is retried: one decision ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "key", "expected"),
    [
        ("GET", "job/j1/status/", None, True),
        ("DELETE", "job/j1", None, True),
        ("POST", "job/j1/cancel/", None, True),
        ("POST", "jobs/watch/", None, True),
        ("POST", "job/init/", "k", True),
        ("POST", "job/init/", None, False),
        ("POST", "job/j1/add_circuits/", None, False),
        ("POST", "job/j1/other/", None, False),
    ],
)
def test_which_requests_are_idempotent(
    method: str, path: str, key: str | None, expected: bool
) -> None:
    assert idempotent(method, path, key) is expected


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (429, True),
        (502, True),
        (503, True),
        (504, True),
        (500, False),
        (400, False),
        (409, False),
        (ConnectionFailedError("reset"), True),
        (RequestTimeoutError("slow"), True),
        (asyncjob.ProtocolError("garbage"), False),
    ],
)
def test_which_failures_are_retried(outcome: int | Exception, expected: bool) -> None:
    assert should_retry("GET", "job/j1/status/", None, outcome) is expected
    assert should_retry("POST", "job/j1/other/", None, outcome) is False


async def test_retries_run_above_the_transport() -> None:
    client, transport = client_with(
        replies(
            json_response({}, 503),
            ConnectionFailedError("GET /x: connection failed"),
            json_response({"status": "PENDING"}),
        )
    )
    async with client:
        assert await client.poll_job_status("j1") is JobStatus.PENDING
    assert len(transport.requests) == 3
    assert client.requests_sent == 3


async def test_a_post_without_idempotency_is_sent_once() -> None:
    client, transport = client_with(replies(json_response({}, 503)))
    async with client:
        with pytest.raises(ServerError):
            await client._ctx.sender.request("POST", "job/j1/other/", body={})
    assert len(transport.requests) == 1


# -- Retry-After and the budget --------------------------------------------------------------

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("0.25", 0.25),
        (" 3 ", 3.0),
        ("-1", None),
        ("soon", None),
        ("inf", None),
        (None, None),
        (email.utils.format_datetime(NOW + dt.timedelta(seconds=30), usegmt=True), 30.0),
        ("Fri, 02 Jan 2026 03:04:15 GMT", 10.0),
        ("Fri, 02 Jan 2026 03:04:15 -0000", 10.0),
        ("Fri, 02 Jan 2026 03:00:00 GMT", 0.0),  # in the past: at once
    ],
)
def test_retry_after_in_both_forms(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_delay_honours_retry_after_within_the_cap_and_the_budget() -> None:
    policy = RetryPolicy(max_retry_after=20.0, budget=30.0, jitter=False, initial=1.0)
    assert policy.delay(1) == 1.0
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(1, retry_after=100.0) is None  # more than max_retry_after: not retried
    assert policy.delay(1, retry_after=7.0, elapsed=25.0) is None  # would end past the budget
    assert policy.delay(5) is None  # the fifth attempt was the last
    assert RetryPolicy(budget=None).delay(1, retry_after=60.0, elapsed=1e6) == 60.0
    assert RetryPolicy.off().delay(1) is None


async def test_an_http_date_retry_after_is_honoured() -> None:
    later = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), True)
    client, transport = client_with(
        replies(
            json_response({}, 429, **{"Retry-After": later}),
            json_response({"status": "RUNNING"}),
        ),
        # An hour asked, more than max_retry_after: no retry, and the hint is kept.
        # Were the date ignored, the 429 would be retried after a plain backoff.
        RetryPolicy(initial=0.001, max_retry_after=60.0, jitter=False, budget=None),
    )
    async with client:
        with pytest.raises(RateLimitedError) as info:
            await client.poll_job_status("j1")
    assert len(transport.requests) == 1
    assert info.value.retry_after is not None and 3500 < info.value.retry_after <= 3600


async def test_a_short_http_date_retry_after_is_waited_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncjob")
    soon = email.utils.format_datetime(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5), True)
    client, transport = client_with(
        replies(
            json_response({}, 429, **{"Retry-After": soon}),
            json_response({"status": "RUNNING"}),
        ),
        RetryPolicy(initial=5.0, jitter=False, budget=None),
    )
    async with client:
        assert await client.poll_job_status("j1") is JobStatus.RUNNING
    assert len(transport.requests) == 2
    # A date already past means "now", not the 5 s backoff: the date was read.
    waits = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert waits == ["GET job/j1/status/ answered 429; retrying in 0 s"]


async def test_a_wait_past_the_budget_is_not_taken() -> None:
    later = email.utils.format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), True)
    client, transport = client_with(
        replies(json_response({"detail": "slow down"}, 429, **{"Retry-After": later})),
        RetryPolicy(budget=60.0, max_retry_after=7200.0),
    )
    async with client:
        with pytest.raises(RateLimitedError) as info:
            await client.poll_job_status("j1")
    assert len(transport.requests) == 1  # at once, not an hour later
    assert info.value.retry_after is not None and info.value.retry_after > 3500


# -- lifecycle -------------------------------------------------------------------------------


async def test_a_request_after_close_is_a_clear_error() -> None:
    client, transport = client_with(replies(json_response({"status": "RUNNING"})))
    async with client:
        await client.poll_job_status("j1")
    with pytest.raises(ClientClosedError, match="closed; create a new one") as info:
        await client.poll_job_status("j1")
    assert isinstance(info.value, AsyncJobError) and isinstance(info.value, RuntimeError)
    with pytest.raises(ClientClosedError):
        await client.__aenter__()
    assert len(transport.requests) == 1
    await client.aclose()  # closing twice is harmless


async def test_a_closed_client_does_not_reopen_its_session(
    local_scheduler: LocalScheduler,
) -> None:
    client = AsyncJobClient(local_scheduler.base_url, local_scheduler.token)
    async with client:
        await client.poll_job_status(await client.submit_circuits({"a": BELL}))
    sent = client.requests_sent
    with pytest.raises(ClientClosedError):
        await client.get_job_results("any")
    assert client.requests_sent == sent
    assert local_scheduler.stats.requests_total > 0


async def test_a_used_client_is_freed_without_the_garbage_collector(
    local_scheduler: LocalScheduler,
) -> None:
    """No reference cycle holds its sender or transport: dropping the client frees them.

    In a cycle, the collector finalizes the objects in any order, and the
    aiohttp session may go first and warn in aiohttp's words (see below).
    """
    client = AsyncJobClient(local_scheduler.base_url, local_scheduler.token)
    await client.poll_job_status(await client.submit_circuits({"a": BELL}))
    sender = weakref.ref(client._ctx.sender)
    transport = weakref.ref(client._ctx.sender.transport)
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del client
        assert sender() is None and transport() is None
    finally:
        gc.enable()


async def test_an_unclosed_client_warns_in_its_own_words(local_scheduler: LocalScheduler) -> None:
    import asyncio

    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
    client = AsyncJobClient(local_scheduler.base_url, local_scheduler.token)
    await client.poll_job_status(await client.submit_circuits({"a": BELL}))  # a session opens
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
    messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert any("AsyncJobClient was garbage-collected without being closed" in m for m in messages)
    assert not [m for m in messages if "Unclosed" in m], messages
    assert not [c for c in loop_errors if "Unclosed" in str(c.get("message"))], loop_errors


async def test_a_client_never_used_does_not_warn() -> None:
    client = AsyncJobClient(BASE, TOKEN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        del client
        gc.collect()


async def test_a_client_over_a_mock_transport_holds_nothing_to_warn_about() -> None:
    client = client_with(replies(json_response({"status": "RUNNING"})))[0]
    await client.poll_job_status("j1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del client
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_version_comes_from_the_package_metadata() -> None:
    assert asyncjob.__version__ == importlib.metadata.version(DISTRIBUTION)


def test_the_readme_mock_transport_example_runs() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(
        r"### Testing your code: `MockTransport`\n.*?```python\n(.*?)```", readme, re.S
    )
    assert block is not None
    exec(compile(block.group(1), "README.md", "exec"), {})
