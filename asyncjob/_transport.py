"""The transport seam: one request in, one response out.

`AsyncTransport` is the interface `AsyncJobClient` sends through;
`AiohttpTransport` the real one (one aiohttp session and connection pool);
`MockTransport` an in-memory one that answers with a function, for tests.
Retries, timeouts, redirects and error statuses are the client's business,
above the transport, so they behave the same whatever the transport is.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
import logging
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
import attrs
from aiohttp import hdrs
from yarl import URL

from ._errors import ClientClosedError, ConnectionFailedError, EventLoopError, ProtocolError
from ._forksafe import abandon
from ._models import Response
from ._neterrors import connection_failed, not_http

__all__ = ["AiohttpTransport", "AsyncTransport", "MockTransport", "Request"]

logger = logging.getLogger("asyncjob")


@attrs.frozen
class Request:
    """One HTTP request as the client sends it; headers (the token among them) not in the repr."""

    method: str
    url: str
    """Absolute and already escaped."""
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    body: bytes | None = attrs.field(default=None, repr=False)
    timeout: float = 30.0
    """Seconds the whole exchange may take; the client enforces it around the transport."""

    @property
    def path(self) -> str:
        """The URL's path, for messages (never the query, nor the host)."""
        return URL(self.url, encoded=True).path


class AsyncTransport(abc.ABC):
    """Sends one request and returns its fully read response.

    Raise `ConnectionFailedError` when no usable answer came (none, one cut
    short, or one that is not HTTP: all worth a retry) and `ProtocolError` for
    an answer the client must not read (over its size limit); any status is a
    `Response`, not an error. `aclose()` releases what the transport holds;
    the client calls it when it is closed.
    """

    @abc.abstractmethod
    async def handle_request(self, request: Request) -> Response:
        """Send `request`; return the response, body read."""

    async def aclose(self) -> None:  # noqa: B027 - most transports hold nothing
        """Release the transport's resources."""

    async def __aenter__(self) -> AsyncTransport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


Handler = Callable[[Request], Response | Awaitable[Response]]


class MockTransport(AsyncTransport):
    """A transport that answers every request by calling `handler(request)`, in memory.

    ```python
    def handler(request: asyncjob.Request) -> asyncjob.Response:
        return asyncjob.Response(200, text='{"status": "COMPLETED"}')

    client = AsyncJobClient(base_url, token, transport=MockTransport(handler))
    ```
    The handler may be sync or async, and may raise `ConnectionFailedError` to
    play a dropped connection. Every request seen is kept in `requests`.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[Request] = []

    async def handle_request(self, request: Request) -> Response:
        self.requests.append(request)
        response = self._handler(request)
        if inspect.isawaitable(response):
            response = await response
        if not isinstance(response, Response):
            raise TypeError(
                f"MockTransport handler returned {type(response).__name__}; return a Response"
            )
        return attrs.evolve(
            response,
            method=response.method or request.method,
            path=response.path or request.path,
        )


class AiohttpTransport(AsyncTransport):
    """HTTP over aiohttp: one session and connection pool, TLS verified by default.

    The session is created on first use, inside the running event loop. It is
    bound to that loop: one left by an earlier loop (another `asyncio.run()`),
    or by the parent of a forked process, is replaced by a fresh one.
    Redirects are never followed (the token must not travel to another host)
    and a body over `max_response_bytes` is refused before it fills memory.
    """

    def __init__(
        self,
        *,
        verify_tls: bool = True,
        max_connections: int = 32,
        connect_timeout: float = 10.0,
        max_response_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self._verify_tls = verify_tls
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._max_response_bytes = max_response_bytes
        # The connection's own limits; the whole exchange's deadline is the client's.
        self._client_timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._pid = os.getpid()
        self._closed = False

    @property
    def verify_tls(self) -> bool:
        """Whether server certificates are verified."""
        return self._verify_tls

    def _open(self) -> aiohttp.ClientSession:
        """The session, created at first use (inside the running loop, as aiohttp requires)."""
        if self._closed:
            raise ClientClosedError("this AsyncJobClient is closed; create a new one")
        self._retire_foreign_session()
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ssl=self._verify_tls)
            self._session = aiohttp.ClientSession(
                connector=connector, raise_for_status=False, trust_env=False
            )
            self._session_loop = asyncio.get_running_loop()
            self._pid = os.getpid()
        return self._session

    def _retire_foreign_session(self) -> None:
        """Drop the session if it belongs to another process or to another event loop.

        A session of a live loop in another thread is still in use there: that is
        an `EventLoopError`, not something to take away from under it.
        """
        session, loop = self._session, self._session_loop
        if session is None or loop is None:
            return
        if self._pid != os.getpid():  # forked: the connections are the parent's
            abandon(session)
        elif loop is asyncio.get_running_loop():
            return
        elif loop.is_running():
            raise EventLoopError(
                "this AsyncJobClient is in use on another running event loop; create one "
                "client per event loop (or share a JobBackend between threads)"
            )
        else:  # a loop that has finished (another asyncio.run()): let its connections go
            _drop(session)
        self._session = self._session_loop = None

    async def aclose(self) -> None:
        """Close the session and its pool; the transport refuses requests from then on."""
        self._closed = True
        with contextlib.suppress(EventLoopError):
            self._retire_foreign_session()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        session = self._session
        if session is None or session.closed:
            return
        if self._pid != os.getpid():  # inherited across fork: the parent's to close
            abandon(session)
            return
        _warn(
            "an AsyncJobClient was garbage-collected without being closed; use "
            "`async with AsyncJobClient(...)` or `await client.aclose()`",
            ResourceWarning,
            source=self,
        )
        _drop(session)

    async def handle_request(self, request: Request) -> Response:
        session = self._open()
        url = URL(request.url, encoded=True)
        method, path = request.method, url.path
        debug = logger.isEnabledFor(logging.DEBUG)
        start = time.perf_counter() if debug else 0.0
        malformed = False
        try:
            async with session.request(
                method,
                url,
                data=request.body,
                headers=request.headers,  # aiohttp copies them
                allow_redirects=False,
                timeout=self._client_timeout,
            ) as resp:
                text = await self._read(resp, method, path)
                response = Response(
                    status_code=resp.status,
                    headers=dict(resp.headers),
                    text=text,
                    method=method,
                    path=path,
                )
        except aiohttp.ClientPayloadError as exc:
            raise ConnectionFailedError(f"{method} {path}: response body cut short") from exc
        except aiohttp.ClientResponseError:
            # Its repr shows the request's headers, the token among them: not chained.
            malformed = True
        except aiohttp.ClientError as exc:
            raise connection_failed(exc, method, url) from exc
        if malformed:
            raise not_http(method, url)
        if debug:
            logger.debug(
                "%s %s -> %s in %.1f ms",
                method,
                path,
                response.status_code,
                (time.perf_counter() - start) * 1000,
            )
        return response

    async def _read(self, resp: aiohttp.ClientResponse, method: str, path: str) -> str:
        cap = self._max_response_bytes
        length = resp.content_length
        if length is not None and length > cap:
            raise ProtocolError(
                f"{method} {path}: response of {length} bytes is over the {cap}-byte limit"
            )
        if length is not None and hdrs.CONTENT_ENCODING not in resp.headers:
            # The body is exactly `length` bytes as sent (none decompressed): one read.
            return (await resp.read()).decode("utf-8", errors="replace")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if size > cap:
                raise ProtocolError(f"{method} {path}: response is over the {cap}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")


def _drop(session: aiohttp.ClientSession) -> None:
    """Let go of a session whose loop may be closed or another thread's; nothing is awaited.

    The session lets go of its pool, whose connections are dropped (what
    aiohttp's own finalizer would do), without aiohttp's anonymous warning.
    On a loop already closed aiohttp drops nothing: each socket is then closed
    by asyncio's transport finalizer, which warns "unclosed transport".
    """
    connector = session.connector
    session.detach()
    close = getattr(connector, "_close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
