"""Hostile or broken servers: every bad answer is a clear, typed error, quickly.

Tiny aiohttp servers on 127.0.0.1 answer what a broken proxy or a hostile server
would: HTML pages, truncated or mis-shaped JSON, unknown statuses, links and
redirects to another host (a second server on another loopback address, which
must never be contacted), endless or forged pagination, bodies of hundreds of MB,
corrupt histograms, and bytes that are not HTTP at all.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from asyncjob import (
    AsyncJobClient,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    HTTPStatusError,
    Limits,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    Timeout,
)
from asyncjob._histogram import encode_histogram

from ..conftest import BELL, fast_retry
from ..test_histogram import uleb
from .conftest import TOKEN, Stub, StubFactory, assert_token_free

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
VECTORS = json.loads((Path(__file__).parents[1] / "data" / "qh.json").read_text())


def client_for(server: Stub, **options: Any) -> AsyncJobClient:
    options.setdefault("retry", fast_retry())
    options.setdefault("timeout", 10.0)
    return AsyncJobClient(server.base_url, TOKEN, **options)


def text(body: str, status: int = 200, content_type: str = "application/json") -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type=content_type)

    return answer


def page(results: list[dict[str, Any]], count: int | None = None, next_: str | None = None) -> Any:
    body: dict[str, Any] = {"next": next_, "previous": None, "results": results}
    if count is not None:
        body["count"] = count
    return body


def entry(label: str, counts: dict[str, int] | None = None) -> dict[str, Any]:
    return {"label": label, "results": encode_histogram(counts or {"00": 3, "11": 4})}


async def submitted(client: AsyncJobClient, labels: list[str]) -> None:
    """Let the client know the labels of job "j1", as if it had submitted them."""
    client._ctx.remember_labels("j1", tuple(labels))


# -- error pages --------------------------------------------------------------------------

HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>{status} Error</title>"
    "<style>body {{ font: 12px sans-serif }}</style><script>var x = '<b>';</script></head>"
    "<body><h1>{status} Something went wrong</h1><p>Request headers: {auth}</p>"
    + "<div>"
    + "filler " * 5000
    + "</div>"
    + "<hr><center>nginx</center></body></html>"
)


@pytest.mark.parametrize(
    ("status", "error", "tries"),
    [
        (400, BadRequestError, 1),
        (401, AuthenticationError, 1),
        (403, AuthenticationError, 1),
        (404, NotFoundError, 1),
        (409, ConflictError, 1),
        (413, BadRequestError, 1),
        (429, RateLimitedError, 4),
        (500, ServerError, 1),
        (502, ServerError, 4),
        (503, ServerError, 4),
        (504, ServerError, 4),
        (418, HTTPStatusError, 1),
    ],
)
async def test_html_error_pages_become_short_typed_errors(
    stub: StubFactory, status: int, error: type[HTTPStatusError], tries: int
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        # The page even echoes the Authorization header, as some debug pages do.
        page = HTML_PAGE.format(status=status, auth=request.headers.get("Authorization"))
        return web.Response(status=status, text=page, content_type="text/html")

    server = await stub(answer)
    async with client_for(server) as client:
        with anyio.fail_after(30), pytest.raises(error) as info:
            await client.poll_job_status("j1")
    exc = info.value
    assert exc.status_code == status
    message = str(exc)
    assert len(message) < 300 and "<" not in message and ">" not in message
    assert "Something went wrong" in message
    assert_token_free(exc)
    assert len(server.seen) == tries  # retried only what docs/protocol.md says is retried


@pytest.mark.parametrize("status", [400, 401, 409, 500])
async def test_json_error_detail_echoing_the_token_is_scrubbed(
    stub: StubFactory, status: int
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        detail = f"bad header {request.headers.get('Authorization')}"
        return web.json_response({"detail": detail}, status=status)

    server = await stub(answer)
    async with client_for(server) as client:
        with pytest.raises(HTTPStatusError) as info:
            await client.poll_job_status("j1")
    assert "bad header Bearer ***" in str(info.value)
    assert_token_free(info.value)


# -- malformed bodies -----------------------------------------------------------------------

NESTED = "[" * 100_000 + "]" * 100_000

BAD_STATUS_BODIES = [
    pytest.param('{"status": "RUNN', id="truncated"),
    pytest.param("OK", id="not json"),
    pytest.param("", id="empty body"),
    pytest.param("[]", id="a list"),
    pytest.param('"COMPLETED"', id="a bare string"),
    pytest.param("5", id="a number"),
    pytest.param("null", id="null"),
    pytest.param("{}", id="no status"),
    pytest.param('{"status": 5}', id="int status"),
    pytest.param('{"status": ""}', id="empty status"),
    pytest.param('{"status": null}', id="null status"),
    pytest.param('{"status": NaN}', id="NaN status"),
    pytest.param('{"status": ["COMPLETED"]}', id="list status"),
    pytest.param('{"status": "DONE"}', id="unknown status"),
    pytest.param('{"status": "RUNNING "}', id="status with a space"),
    pytest.param('{"status": "\\u0000"}', id="NUL status"),
    pytest.param('{"status": 1' + "0" * 5000 + "}", id="5000-digit number"),
    pytest.param(NESTED, id="nested 100k deep"),
    pytest.param("<html><body>200 OK</body></html>", id="an HTML page"),
]


@pytest.mark.parametrize("body", BAD_STATUS_BODIES)
async def test_malformed_status_answers_are_protocol_errors(stub: StubFactory, body: str) -> None:
    server = await stub(text(body))
    async with client_for(server) as client:
        with anyio.fail_after(30), pytest.raises(ProtocolError) as info:
            await client.poll_job_status("j1", loop_until_complete=True)
    # The same garbage to the watch long poll means "no extension"; the status
    # request follows, and its malformed answer is not retried.
    assert [seen.raw_path for seen in server.seen] == ["/api/jobs/watch/", "/api/job/j1/status/"]
    assert len(str(info.value)) < 300
    assert_token_free(info.value)


async def test_status_echoing_the_token_does_not_leak_it(stub: StubFactory) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": request.headers["Authorization"]})

    server = await stub(answer)
    async with client_for(server) as client:
        with pytest.raises(ProtocolError, match="unknown job status") as info:
            await client.poll_job_status("j1")
    assert_token_free(info.value)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param('{"job_id": 5}', id="int id"),
        pytest.param('{"job_id": ""}', id="empty id"),
        pytest.param('{"job_id": null}', id="null id"),
        pytest.param('{"job_id": ".."}', id="dot dot"),
        pytest.param('{"id": "j1"}', id="wrong key"),
        pytest.param("[]", id="a list"),
        pytest.param('{"job_id": "j', id="truncated"),
        pytest.param(NESTED, id="nested"),
    ],
)
async def test_malformed_init_answers_are_protocol_errors(stub: StubFactory, body: str) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/init/"):
            return web.Response(text=body, content_type="application/json", status=201)
        return web.json_response({"circuits_added": 1})

    server = await stub(answer)
    async with client_for(server) as client:
        with anyio.fail_after(30), pytest.raises(ProtocolError) as info:
            await client.submit_circuits({"a": BELL})
    assert_token_free(info.value)
    assert [seen.raw_path for seen in server.seen] == ["/api/job/init/"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"results": {}}, id="results a dict"),
        pytest.param({"results": None}, id="results null"),
        pytest.param({"next": None}, id="no results"),
        pytest.param({"results": [1]}, id="entry an int"),
        pytest.param({"results": [{"label": 5, "results": {}}]}, id="int label"),
        pytest.param({"results": [{"results": {}}]}, id="no label"),
        pytest.param({"results": [entry("a"), entry("a")]}, id="duplicate label"),
        pytest.param({"count": -1, "results": []}, id="negative count"),
        pytest.param(
            {"results": [{"label": "a", "results": {"encoding": "qh9", "payload": "QUJD"}}]},
            id="unknown encoding",
        ),
        pytest.param(
            {"results": [{"label": "a", "results": {"encoding": "qh1", "payload": "QUJD"}}]},
            id="no n_bits",
        ),
        pytest.param(
            {
                "results": [
                    {"label": "a", "results": {"encoding": TOKEN, "n_bits": 2, "payload": "QQ=="}}
                ]
            },
            id="token as encoding",
        ),
        pytest.param([], id="a list"),
    ],
)
async def test_malformed_results_pages_are_protocol_errors(stub: StubFactory, body: Any) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(body)

    server = await stub(answer)
    async with client_for(server) as client:
        with anyio.fail_after(30), pytest.raises(ProtocolError) as info:
            await client.get_job_results("j1")
    assert_token_free(info.value)


# -- pagination -----------------------------------------------------------------------------


async def test_a_forged_huge_count_fails_fast(stub: StubFactory) -> None:
    """count = 10**12 must not become 10**10 requests (or tasks): the client stops at once."""
    server = await stub(_returning(page([entry("a")], count=10**12)))
    async with client_for(server) as client:
        with anyio.fail_after(30), pytest.raises(ProtocolError):
            await client.get_job_results("j1")
    assert len(server.seen) <= 1 + client.config.limits.results_concurrency


async def test_count_that_disagrees_with_the_submission_fails_before_paging(
    stub: StubFactory,
) -> None:
    server = await stub(_returning(page([entry("a")], count=5000)))
    async with client_for(server) as client:
        await submitted(client, ["a", "b"])
        with pytest.raises(ProtocolError, match="counts 5000 results for the 2 circuits"):
            await client.get_job_results("j1")
    assert len(server.seen) == 1


async def test_empty_pages_behind_a_count_are_refused(stub: StubFactory) -> None:
    """A count of 1000 followed by empty pages once returned an empty result silently."""

    async def answer(request: web.Request) -> web.StreamResponse:
        offset = int(request.query.get("offset", "0"))
        return _json(page([entry("a")] if offset == 0 else [], count=1000))

    server = await stub(answer)
    async with client_for(server) as client:
        with anyio.fail_after(30), pytest.raises(ProtocolError, match="empty"):
            await client.get_job_results("j1")


async def test_short_count_is_refused(stub: StubFactory) -> None:
    server = await stub(_returning(page([entry("a"), entry("b")], count=1)))
    async with client_for(server) as client:
        with pytest.raises(ProtocolError, match="counts 1 results but sent 2"):
            await client.get_job_results("j1")


async def test_a_server_capping_the_page_size_still_gives_every_result(stub: StubFactory) -> None:
    """The page size the server really uses (here 3, though 100 were asked) sets the offsets."""
    labels = [f"c{i:02d}" for i in range(20)]

    async def answer(request: web.Request) -> web.StreamResponse:
        offset = int(request.query["offset"])
        return _json(page([entry(label) for label in labels[offset : offset + 3]], count=20))

    server = await stub(answer)
    async with client_for(server) as client:
        await submitted(client, labels)
        result = await client.get_job_results("j1")
    assert [r["label"] for r in result.results or []] == labels
    assert len(server.seen) == 7


@pytest.mark.parametrize("known_labels", [True, False])
async def test_endless_next_links_are_cut_short(stub: StubFactory, known_labels: bool) -> None:
    seen = 0

    async def answer(request: web.Request) -> web.StreamResponse:
        nonlocal seen
        seen += 1
        # Always one more page: a loop (the same link again) once the labels run out.
        link = f"{server.base_url}job/j1/resultsV2/?page={min(seen, 3)}"
        return _json(page([entry("a")], next_=link))

    server = await stub(answer)
    async with client_for(server) as client:
        if known_labels:
            await submitted(client, ["a"])
        with anyio.fail_after(30), pytest.raises(ProtocolError):
            await client.get_job_results("j1")
    assert seen <= 5


async def test_empty_page_with_a_next_link_is_refused(stub: StubFactory) -> None:
    calls = 0

    async def answer(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return _json(page([], next_=f"{server.base_url}job/j1/resultsV2/?n={calls}"))

    server = await stub(answer)
    async with client_for(server) as client:
        with anyio.fail_after(30), pytest.raises(ProtocolError, match="empty"):
            await client.get_job_results("j1")
    assert calls == 2


async def test_same_origin_next_links_are_followed(stub: StubFactory) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        if request.query.get("offset") == "0":
            return _json(page([entry("a")], next_=f"{server.base_url}job/j1/resultsV2/?p=2"))
        return _json(page([entry("b")]))

    server = await stub(answer)
    async with client_for(server) as client:
        result = await client.get_job_results("j1")
    assert [r["label"] for r in result.results or []] == ["a", "b"]


# -- other hosts: links and redirects ---------------------------------------------------------


def elsewhere_links(server: Stub, other: Stub) -> list[str]:
    path = "/api/job/j1/resultsV2/?limit=1&offset=1"
    return [
        other.origin + path,  # another host
        f"http://{other.host}:{server.port}{path}",  # another host, same port
        f"https://127.0.0.1:{server.port}{path}",  # another scheme
        f"//{other.host}:{other.port}{path}",  # scheme-relative
        f"http://127.0.0.1:{server.port}@{other.host}:{other.port}{path}",  # userinfo trick
        f"{server.origin}/elsewhere/?offset=1",  # same origin, outside the base URL
    ]


async def test_next_links_to_another_host_are_never_followed(
    stub: StubFactory, elsewhere: Stub
) -> None:
    server = await stub(_returning({}))
    for link in elsewhere_links(server, elsewhere):
        server.handler = _returning(page([entry("a")], next_=link))
        async with client_for(server) as client:
            with anyio.fail_after(30), pytest.raises(ProtocolError, match="outside the base URL"):
                await client.get_job_results("j1")
    assert elsewhere.seen == []  # the token never went there


async def test_next_links_not_followed_are_not_checked(stub: StubFactory, elsewhere: Stub) -> None:
    """Finding 7 of issue 13: with `count` known the client pages by its own URLs, so a
    `next` naming another alias of the server (or http:// behind a TLS proxy) is fine."""
    server = await stub(_returning({}))
    for link in elsewhere_links(server, elsewhere):

        async def answer(request: web.Request, link: str = link) -> web.StreamResponse:
            offset = int(request.query.get("offset", "0"))
            return _json(page([entry("ab"[offset])], count=2, next_=link if offset == 0 else None))

        server.handler = answer
        async with client_for(server) as client:
            with anyio.fail_after(30):
                result = await client.get_job_results("j1")
        assert [r["label"] for r in result.results or []] == ["a", "b"]
    assert elsewhere.seen == []  # the token never went there


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("operation", ["status", "init", "results", "cancel", "delete"])
async def test_redirects_to_another_host_are_not_followed(
    stub: StubFactory, elsewhere: Stub, status: int, operation: str
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        target = elsewhere.origin + request.raw_path
        return web.Response(status=status, headers={"Location": target}, text="moved")

    server = await stub(answer)
    async with client_for(server) as client:
        call = {
            "status": lambda: client.poll_job_status("j1"),
            "init": lambda: client.submit_circuits({"a": BELL}),
            "results": lambda: client.get_job_results("j1"),
            "cancel": lambda: client.cancel_job("j1"),
            "delete": lambda: client.delete_job("j1"),
        }[operation]
        with anyio.fail_after(30), pytest.raises(ProtocolError, match="redirect") as info:
            await call()
    assert_token_free(info.value)
    assert len(server.seen) == 1  # not retried either
    assert elsewhere.seen == []  # the Authorization header never went to the other host


# -- big bodies -----------------------------------------------------------------------------

MiB = 1024 * 1024


@functools.cache
def gzip_bomb(unpacked: int) -> bytes:
    """`unpacked` bytes of zeros, gzipped (about 1000:1), built without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    pieces = [packer.compress(zeros) for _ in range(unpacked // MiB)]
    return b"".join([*pieces, packer.flush()])


def flood(total: int, sent: list[int], *, declare: bool = False) -> Handler:
    """A handler streaming `total` bytes of a JSON string, counting what it got to send."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if declare:
            response.content_length = total
        block = b"x" * MiB
        await response.prepare(request)
        try:
            await response.write(b'{"status": "')
            while sent[0] < total:
                await response.write(block)
                sent[0] += len(block)
        except (ConnectionError, RuntimeError):
            pass  # the client went away: what the test wants
        return response

    return answer


def bomb(blob: bytes) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=blob, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    return answer


@pytest.mark.parametrize(("cap", "peak_limit"), [(MiB, 24 * MiB), (None, 64 * MiB + 48 * MiB)])
async def test_a_body_of_hundreds_of_mb_is_cut_off_early(
    stub: StubFactory, cap: int | None, peak_limit: int
) -> None:
    total = 400 * MiB
    sent = [0]
    server = await stub(flood(total, sent))
    limits = Limits() if cap is None else Limits(max_response_bytes=cap)
    async with client_for(server, limits=limits, retry=RetryPolicy.off()) as client:
        tracemalloc.start()
        try:
            with anyio.fail_after(60), pytest.raises(ProtocolError, match="limit"):
                await client.poll_job_status("j1")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert sent[0] < total // 2  # the client stopped reading long before the end
    assert peak < peak_limit


async def test_a_declared_huge_content_length_is_refused_without_reading(
    stub: StubFactory,
) -> None:
    sent = [0]
    server = await stub(flood(400 * MiB, sent, declare=True))
    async with client_for(server, retry=RetryPolicy.off()) as client:
        with anyio.fail_after(30), pytest.raises(ProtocolError, match="over the"):
            await client.poll_job_status("j1")
    assert sent[0] < 64 * MiB


async def test_a_gzip_bomb_stays_within_the_response_cap(stub: StubFactory) -> None:
    blob = gzip_bomb(128 * MiB)  # ~130 kB on the wire
    server = await stub(bomb(blob))
    async with client_for(
        server, retry=RetryPolicy.off(), limits=Limits(max_response_bytes=4 * MiB)
    ) as client:
        tracemalloc.start()
        try:
            with anyio.fail_after(60), pytest.raises((ProtocolError, ConnectionFailedError)):
                await client.poll_job_status("j1")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # aiohttp inflates at most 32 MiB per network chunk (then fails): ~2 x 32 MiB at worst,
    # whatever the client's own cap; the 128 MiB never materialise.
    assert peak < 96 * MiB


# -- histograms -----------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["corrupt"], ids=[v["name"] for v in VECTORS["corrupt"]])
async def test_every_corrupt_histogram_vector_fails_through_the_results_path(
    stub: StubFactory, vector: dict[str, Any]
) -> None:
    bad = {k: vector[k] for k in ("encoding", "n_bits", "payload")}
    body = page([entry("ok"), {"label": "bad", "results": bad}], count=2)
    server = await stub(_returning(body))
    async with client_for(server) as client:
        await submitted(client, ["ok", "bad"])
        with anyio.fail_after(30), pytest.raises(ProtocolError, match="histogram"):
            await client.get_job_results("j1")


@pytest.mark.parametrize("vector", VECTORS["good"], ids=[v["name"] for v in VECTORS["good"]])
async def test_every_good_histogram_vector_decodes_through_the_results_path(
    stub: StubFactory, vector: dict[str, Any]
) -> None:
    good = {k: vector[k] for k in ("encoding", "n_bits", "payload")}
    server = await stub(_returning(page([{"label": "v", "results": good}], count=1)))
    async with client_for(server) as client:
        result = await client.get_job_results("j1")
    assert result.results == [{"label": "v", "results": vector["histogram"]}]


@pytest.mark.parametrize("n_bits", [2**30, 2])
async def test_a_qh2_width_of_2_to_the_30_is_refused_without_allocating(
    stub: StubFactory, n_bits: int
) -> None:
    # A plausible header: 2**30-bit outcomes, 1000 of them, and indices full of 0xff bytes.
    blob = b"QH2" + uleb(2**30) + uleb(1000) + uleb(1000) + uleb(1000) + b"\xff" * 100_000
    payload = base64.b64encode(blob).decode()
    body = page(
        [{"label": "w", "results": {"encoding": "qh2", "n_bits": n_bits, "payload": payload}}]
    )
    server = await stub(_returning(body))
    async with client_for(server) as client:
        tracemalloc.start()
        try:
            started = time.perf_counter()
            with anyio.fail_after(30), pytest.raises(ProtocolError, match=r"2\*\*20|width"):
                await client.get_job_results("j1")
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 16 * MiB
    assert elapsed < 30  # (bounded by fail_after as well; a 2**30-bit decode would take ages)


# -- not HTTP at all ------------------------------------------------------------------------


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[bytes | None], Awaitable[str]]]:
    """TCP servers on 127.0.0.1 that answer raw bytes (or nothing, keeping the line open)."""
    servers: list[asyncio.Server] = []

    async def make(reply: bytes | None) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.readuntil(b"\r\n\r\n")
                if reply is None:
                    await reader.read()  # say nothing until the client hangs up
                else:
                    writer.write(reply)
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/api/"

    yield make
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{}", id="bad length"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", id="not HTTP"),
        pytest.param(b"HTTP/1.1 2000 WHAT\r\n\r\n", id="bad status line"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 10, id="TLS bytes"),
        pytest.param(b"", id="closed at once"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", id="cut short"),
    ],
)
async def test_garbage_on_the_wire_is_a_connection_error_without_the_token(
    raw: Callable[[bytes | None], Awaitable[str]], reply: bytes
) -> None:
    base = await raw(reply)
    async with AsyncJobClient(base, TOKEN, retry=fast_retry(), timeout=5.0) as client:
        with anyio.fail_after(30), pytest.raises(ConnectionFailedError) as info:
            await client.poll_job_status("j1")
    assert_token_free(info.value)


async def test_a_server_that_never_answers_times_out(
    raw: Callable[[bytes | None], Awaitable[str]],
) -> None:
    base = await raw(None)
    async with AsyncJobClient(
        base, TOKEN, retry=RetryPolicy(attempts=2, initial=0.01), timeout=Timeout(request=0.3)
    ) as client:
        with anyio.fail_after(30), pytest.raises(RequestTimeoutError, match="timed out"):
            await client.poll_job_status("j1")


async def test_a_trickling_body_times_out(stub: StubFactory) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            for _ in range(600):  # one byte every 50 ms: 30 s in all
                await response.write(b" ")
                await asyncio.sleep(0.05)
        except (ConnectionError, RuntimeError):
            pass
        return response

    server = await stub(trickle)
    async with client_for(
        server, retry=RetryPolicy(attempts=2, initial=0.01), timeout=Timeout(request=0.3)
    ) as client:
        with anyio.fail_after(30), pytest.raises(RequestTimeoutError):
            await client.poll_job_status("j1")
    assert len(server.seen) == 2


def _json(body: Any) -> web.Response:
    return web.json_response(body)


def _returning(body: Any) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response(body)

    return answer
