"""The token stays secret: logs, messages, reprs, pickles, plain HTTP, TLS, proxies.

The token is distinctive (`conftest.TOKEN`), so any occurrence of it is a leak.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import ssl
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from aiohttp import web

from asyncjob import (
    AiohttpTransport,
    AsyncJobClient,
    AsyncJobError,
    AuthenticationError,
    ClientConfig,
    ConfigurationError,
    ConnectionFailedError,
    ExecutionResult,
    JobBackend,
    JobNotCompleteError,
    Limits,
    NotFoundError,
    PollingPolicy,
    ProtocolError,
    RetryPolicy,
    ServerError,
)
from asyncjob.local import FaultConfig, LocalScheduler

from ..conftest import BELL, GHZ3, fast_retry
from .conftest import TOKEN, RecordAll, Stub, StubFactory, assert_token_free

WRONG_TOKEN = "wrong-T0KEN-0c2d5e8f1a7b"


def check_logs(logs: RecordAll, *secrets: str) -> None:
    assert logs.lines, "nothing was logged: the capture is broken"
    for line in logs.lines:
        for secret in secrets:
            assert secret not in line, f"a log line shows a secret: {line[:200]!r}"


async def expect(error: type[BaseException], call: Callable[[], Awaitable[Any]]) -> None:
    """`call()` raises `error`, which shows no token anywhere (chain included)."""
    with anyio.fail_after(60), pytest.raises(error) as info:
        await call()
    assert_token_free(info.value)
    assert_token_free(info.value, WRONG_TOKEN)


async def test_no_token_in_logs_or_errors_across_a_faulty_run(
    all_logs: RecordAll, stub: StubFactory
) -> None:
    faults = FaultConfig(
        seed=5,
        error_rate=0.15,
        rate_limit_rate=0.05,
        retry_after=0.01,
        reset_rate=0.05,
        hang_rate=0.02,
        hang_time=2.0,
        truncate_rate=0.05,
        error_when="random",
        fail_rate=0.2,
    )
    async with LocalScheduler(
        token=TOKEN, faults=faults, job_duration=0.01, executor="sampler"
    ) as scheduler:
        async with AsyncJobClient(
            scheduler.base_url,
            TOKEN,
            retry=RetryPolicy(attempts=15, initial=0.001, max_backoff=0.02),
            polling=PollingPolicy(interval=0.01),
            timeout=0.5,
            limits=Limits(max_payload_bytes=600, results_page_size=2),
        ) as client:
            outcomes = []
            for n in range(12):  # faults, retries, failed jobs (fail_rate)...
                try:
                    result = await client.run({f"b{n}": BELL, f"g{n}": GHZ3, f"c{n}": BELL})
                    outcomes.append(result)
                except AsyncJobError as exc:
                    assert_token_free(exc)
                    outcomes.append(exc)
            assert any(isinstance(o, ExecutionResult) for o in outcomes)
        assert scheduler.stats.total_faults > 10

    # Error paths (jobs here run until cancelled).
    async with LocalScheduler(token=TOKEN, job_duration=3600, executor="sampler") as scheduler:
        async with AsyncJobClient(scheduler.base_url, TOKEN, retry=fast_retry()) as client:
            handle = await client.submit_circuits({"a": BELL})
            await client.cancel_job(handle)
            await client.cancel_job(handle)  # 409: already terminal
            await expect(JobNotCompleteError, lambda: client.get_job_results(handle))
            await expect(NotFoundError, lambda: client.poll_job_status("nope"))
        async with AsyncJobClient(scheduler.base_url, WRONG_TOKEN, retry=fast_retry()) as wrong:
            await expect(AuthenticationError, lambda: wrong.submit_circuits({"a": BELL}))

    # A hostile server that echoes the Authorization header everywhere it can.
    async def echo(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if request.path.endswith("/status/"):
            return web.json_response({"status": auth})
        if request.path.endswith("/resultsV2/"):
            return web.json_response({"results": [{"label": auth, "results": {}}]})
        if request.path.endswith("/init/"):
            return web.json_response({"detail": f"you sent {auth}"}, status=400)
        return web.Response(
            status=502, text=f"<h1>502</h1><pre>{auth}</pre>", content_type="text/html"
        )

    server: Stub = await stub(echo)
    async with AsyncJobClient(server.base_url, TOKEN, retry=fast_retry()) as client:
        await expect(ProtocolError, lambda: client.poll_job_status("j1"))
        await expect(ServerError, lambda: client.cancel_job("j1"))
        await expect(AsyncJobError, lambda: client.submit_circuits({"a": BELL}))
        client._ctx.remember_labels("j1", ("x",))
        await expect(ProtocolError, lambda: client.get_job_results("j1"))

    # The blocking facade too, through its loop thread.
    async with LocalScheduler(token=TOKEN, job_duration=0.01, executor="sampler") as scheduler:
        with JobBackend(scheduler.base_url, TOKEN, polling_interval=0.01) as backend:
            results: list[Any] = []

            def blocking() -> None:
                results.append(backend.run({"a": BELL}))
                try:
                    backend.poll_job_status("nope")
                except NotFoundError as exc:
                    results.append(exc)

            # The backend blocks its calling thread, so it runs on another one while this
            # loop keeps serving the scheduler.
            thread = threading.Thread(target=blocking)
            thread.start()
            await anyio.to_thread.run_sync(thread.join, 30)
            assert not thread.is_alive()
            assert isinstance(results[0], ExecutionResult) and isinstance(
                results[1], NotFoundError
            )
            assert_token_free(results[1])

    debug = [r for r in all_logs.records if r.name == "asyncjob" and r.levelno == logging.DEBUG]
    assert any("retrying" in r.getMessage() for r in debug)  # the faults were logged...
    check_logs(all_logs, TOKEN, WRONG_TOKEN)  # ...and the token never was


def test_reprs_and_pickles_never_show_the_token() -> None:
    config = ClientConfig.build("http://127.0.0.1:1/api/", TOKEN, 1000)
    client = AsyncJobClient("http://127.0.0.1:1/api/", TOKEN)
    with JobBackend("http://127.0.0.1:1/api/", TOKEN) as backend:
        copy = pickle.loads(pickle.dumps(backend))
        # The token travels (a worker needs it)...
        assert copy.config.token == TOKEN
        assert TOKEN.encode() in pickle.dumps(backend)
        # ...but no repr shows it.
        shown = [repr(config), str(config), repr(client), repr(client.config), repr(backend)]
        shown += [repr(copy), repr(copy.config), repr(pickle.loads(pickle.dumps(config)))]
        copy.close()
        shown.append(repr(copy))
    for text in shown:
        assert TOKEN not in text, text
    errors: list[AsyncJobError] = [
        AuthenticationError(401, "bad token ***", method="GET", path="/api/"),
        ServerError(502, "Bad Gateway", method="GET", path="/api/job/x/status/"),
        ProtocolError("server reported an unknown job status 'x'"),
        JobNotCompleteError("x", "RUNNING"),
    ]
    for error in errors:
        again = pickle.loads(pickle.dumps(error))
        assert repr(again) == repr(error) and TOKEN not in repr(again)


# -- plain http ------------------------------------------------------------------------------

REFUSED_HOSTS = [
    "http://example.com/api/",
    "http://10.0.0.1/api/",
    "http://192.168.1.10:8000/api/",
    "http://0.0.0.0:8000/api/",
    "http://localhost.example.com/api/",
    "http://127.0.0.1.example.com/api/",
    "http://[::ffff:8.8.8.8]/api/",
    "http://[2001:db8::1]/api/",
    "HTTP://example.com/api/",
]
LOOPBACK = [
    "http://127.0.0.1:8000/api/",
    "http://127.6.7.8/api/",
    "http://localhost:8000/api/",
    "http://LOCALHOST/api/",
    "http://[::1]:8000/api/",
]


@pytest.fixture
def no_env() -> Iterator[None]:
    names = ("ASYNCJOB_BASE_URL", "ASYNCJOB_TOKEN")
    saved = {k: os.environ.pop(k) for k in names if k in os.environ}
    yield
    for name in names:
        os.environ.pop(name, None)
    os.environ.update(saved)


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("url", REFUSED_HOSTS)
@pytest.mark.parametrize("cls", [AsyncJobClient, JobBackend])
def test_plain_http_to_a_remote_host_is_refused(url: str, cls: type) -> None:
    with pytest.raises(ConfigurationError, match="http") as info:
        cls(url, TOKEN)
    assert TOKEN not in str(info.value)
    os.environ["ASYNCJOB_BASE_URL"] = url  # from the environment too
    with pytest.raises(ConfigurationError):
        cls(token=TOKEN)
    # Allowed only when asked for explicitly (no request is made by the constructor).
    allowed = cls(url, TOKEN, allow_insecure_http=True)
    assert allowed.config.allow_insecure_http
    https = cls(url.lower().replace("http://", "https://"), TOKEN)
    assert https.config.base_url.startswith("https://")
    for obj in (allowed, https):
        if isinstance(obj, JobBackend):
            obj.close()


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("url", LOOPBACK)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert AsyncJobClient(url, TOKEN).config.base_url == url
    with JobBackend(url, TOKEN) as backend:
        assert backend.config.base_url == url


# -- TLS -------------------------------------------------------------------------------------


async def test_tls_verification_is_on_by_default() -> None:
    async with AsyncJobClient("https://127.0.0.1:1/api/", TOKEN) as client:
        assert client.config.verify_tls is True
        assert isinstance(client.transport, AiohttpTransport)
        assert client.transport.verify_tls is True
    async with AsyncJobClient("https://127.0.0.1:1/api/", TOKEN, verify_tls=False) as client:
        assert isinstance(client.transport, AiohttpTransport)
        assert client.transport.verify_tls is False


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for 127.0.0.1 (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not available")
    folder: Path = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_a_self_signed_server_gets_no_request_unless_verification_is_off(
    self_signed: ssl.SSLContext,
) -> None:
    seen: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"status": "RUNNING"})

    app = web.Application()
    app.router.add_get("/api/job/{job}/status/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed)
    await site.start()
    base = f"https://127.0.0.1:{runner.addresses[0][1]}/api/"
    try:
        async with AsyncJobClient(base, TOKEN, retry=fast_retry()) as client:
            with anyio.fail_after(30), pytest.raises(ConnectionFailedError) as info:
                await client.poll_job_status("j1")
            assert_token_free(info.value)
        assert seen == []  # the handshake failed: the request (and token) never went out
        async with AsyncJobClient(base, TOKEN, retry=fast_retry(), verify_tls=False) as client:
            await client.poll_job_status("j1")
        assert seen == [f"Bearer {TOKEN}"]  # the server works: verification made the difference
    finally:
        await runner.cleanup()


# -- proxies from the environment --------------------------------------------------------------


async def test_proxy_variables_are_ignored(
    stub: StubFactory, scheduler: LocalScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trust_env=False: a proxy named in the environment never sees a request (or the token)."""

    async def proxy(request: web.Request) -> web.StreamResponse:
        return web.Response(status=502, text="proxy")

    trap = await stub(proxy)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, trap.origin)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with AsyncJobClient(scheduler.base_url, TOKEN, polling_interval=0.01) as client:
        result = await client.run({"a": BELL})
    assert result.results and result.results[0]["label"] == "a"
    assert trap.seen == []
    # (Positive control: aiohttp itself would honour these variables.)
    async with aiohttp.ClientSession(trust_env=True) as session:
        async with session.get(scheduler.base_url) as response:
            assert response.status == 502
    assert len(trap.seen) == 1
