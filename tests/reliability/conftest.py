"""Fixtures of the reliability suite: local schedulers, hostile servers, leak checks."""

from __future__ import annotations

import importlib.util
import logging
import socket
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web

from asyncjob.local import LocalScheduler

TOKEN = "rel-T0KEN-5f3a9c1e7b2d4086"
"""A distinctive token: any occurrence of it in a log, message or repr is a leak."""

ROOT = Path(__file__).parents[2]

StubHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_soak() -> ModuleType:
    """bench/soak.py as a module (bench/ is not a package)."""
    name = "asyncjob_bench_soak"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Seen:
    """One request as it arrived at a stub server."""

    method: str
    raw_path: str
    query_string: str
    headers: dict[str, str]


@dataclass
class Stub:
    """A tiny aiohttp server on a loopback address that answers with `handler`."""

    host: str
    handler: StubHandler
    seen: list[Seen] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self) -> Stub:
        async def catch_all(request: web.Request) -> web.StreamResponse:
            self.seen.append(
                Seen(
                    request.method,
                    request.raw_path.split("?", 1)[0],
                    request.query_string,
                    dict(request.headers),
                )
            )
            return await self.handler(request)

        app = web.Application()
        app.router.add_route("*", r"/{tail:[\s\S]*}", catch_all)  # any path, CR/LF too
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        return self

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


StubFactory = Callable[..., Awaitable[Stub]]


def _other_loopback() -> str:
    """127.0.0.2 where it can be bound (Linux), else 127.0.0.1 (another port: another origin)."""
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return "127.0.0.1"
    return "127.0.0.2"


OTHER_HOST = _other_loopback()


@pytest.fixture
async def stub() -> AsyncIterator[StubFactory]:
    """Start stub servers: ``await stub(handler, host="127.0.0.1")``; all stopped at the end."""
    started: list[Stub] = []

    async def make(handler: StubHandler, host: str = "127.0.0.1") -> Stub:
        server = await Stub(host, handler).start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


@pytest.fixture
async def elsewhere(stub: StubFactory) -> Stub:
    """A server on another loopback host that must never be contacted: it records everything."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "COMPLETED", "job_id": "evil", "results": []})

    return await stub(answer, host=OTHER_HOST)


@pytest.fixture
async def scheduler() -> AsyncIterator[LocalScheduler]:
    """A fault-free local scheduler with short jobs."""
    async with LocalScheduler(token=TOKEN, job_duration=0.02, seed=1, executor="sampler") as s:
        yield s


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception chained to it (causes and contexts)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            todo += list(current.exceptions)


def assert_token_free(exc: BaseException, token: str = TOKEN) -> None:
    """Neither `exc`, nor anything chained to it, shows the token in str, repr or traceback."""
    for item in exception_chain(exc):
        assert token not in str(item), f"token in str() of {type(item).__name__}"
        assert token not in repr(item), f"token in repr() of {type(item).__name__}"
        assert token not in repr(item.args), f"token in args of {type(item).__name__}"
    text = "".join(traceback.format_exception(exc))
    assert token not in text


class RecordAll(logging.Handler):
    """Keeps every record of every logger, formatted as a handler would print it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []
        self.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s %(args)s")
        )

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def all_logs() -> Iterator[RecordAll]:
    """Every log record of every logger at DEBUG, for the duration of the test."""
    handler = RecordAll()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def settle_threads(baseline: set[threading.Thread], timeout: float = 30.0) -> list[str]:
    """Join threads started since `baseline` (bounded); the names of those still alive."""
    for thread in threading.enumerate():
        if thread not in baseline and thread is not threading.current_thread():
            thread.join(timeout)
    return [t.name for t in threading.enumerate() if t not in baseline]


def run_async(func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run `func(*args)` on a fresh event loop of its own (closed, with its threads, after)."""
    import anyio

    return anyio.run(func, *args, backend="asyncio")
