"""Sending requests through a transport: the token, timeouts, retries and error statuses.

This layer sits above `AsyncTransport`, so a `MockTransport` exercises the
same retries and error mapping as the real one. Every attempt is bounded by
`Timeout.request` (plus the hold of a long poll); retries follow
`asyncjob._retry`; redirects are refused; error messages are one short,
HTML-free, token-free line.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import anyio
import anyio.lowlevel
from yarl import URL

from ._config import ClientConfig
from ._errors import (
    AsyncJobError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConflictError,
    ConnectionFailedError,
    HTTPStatusError,
    InvalidInputError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    ServerError,
)
from ._forksafe import PerLoop
from ._models import Response
from ._neterrors import missing_api_hint, timed_out
from ._retry import parse_retry_after, should_retry
from ._secrets import scrub
from ._transport import AiohttpTransport, AsyncTransport, Request
from ._version import __version__
from ._wire import wire_json

__all__ = ["Sender", "default_transport", "job_path", "short_message"]

logger = logging.getLogger("asyncjob")

_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]*>", re.S | re.I)
_SPACE = re.compile(r"\s+")
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")
"""Characters a URL carries as they are: an id made of them needs no escaping."""


def job_path(job_id: str, endpoint: str = "") -> str:
    """`job/{id}/{endpoint}` with the id escaped so it can never change the path."""
    if not isinstance(job_id, str) or not job_id or job_id in (".", ".."):
        raise InvalidInputError(f"invalid job id {job_id!r}")
    escaped = job_id if _UNRESERVED.fullmatch(job_id) else quote(job_id, safe="")
    return f"job/{escaped}/{endpoint}"


def default_transport(config: ClientConfig) -> AiohttpTransport:
    """The aiohttp transport shaped by the configuration's TLS, timeout and limits."""
    return AiohttpTransport(
        verify_tls=config.verify_tls,
        max_connections=config.limits.max_connections,
        connect_timeout=config.timeout.connect,
        max_response_bytes=config.limits.max_response_bytes,
    )


class Sender:
    """Sends the client's requests through its transport, with retries when safe."""

    def __init__(self, config: ClientConfig, transport: AsyncTransport) -> None:
        self._config = config
        self._base = URL(config.base_url)
        self._prefix = str(self._base)
        # Read-only views shared by every request: a transport copies what it sends.
        headers = {
            "Authorization": f"Bearer {config.token}",
            "User-Agent": f"asyncjob/{__version__}",
        }
        self._headers: Mapping[str, str] = MappingProxyType(headers)
        self._json_headers: Mapping[str, str] = MappingProxyType(
            {**headers, "Content-Type": "application/json"}
        )
        self.transport = transport
        self.requests_sent = 0
        self.closed = False
        # The factory holds the number, not `self`: a cycle through it would leave the
        # transport to the garbage collector, which may finalize its session first.
        connections = config.limits.max_connections
        self._slots = PerLoop(lambda: asyncio.Semaphore(connections))

    def _slot(self) -> asyncio.Semaphore:
        """The running loop's limit of requests in flight (one per pooled connection).

        A request waits here, before its timeout starts, rather than in the pool:
        thousands of concurrent calls queue up instead of timing out.
        """
        return self._slots.get()

    async def aclose(self) -> None:
        """Close the transport; every request from then on is a `ClientClosedError`."""
        self.closed = True
        await self.transport.aclose()

    def url(self, path: str) -> URL:
        """Absolute URL of `path` (already escaped) under the base URL."""
        return URL(self._prefix + path, encoded=True)

    def same_origin_path(self, link: str) -> str:
        """The path of a server-given link relative to the base URL, if it points there.

        A `next` link to another host, scheme or port is refused: following it
        would send the token elsewhere.
        """
        target = urlsplit(link)
        base = urlsplit(str(self._base))
        if (target.scheme, target.netloc) != (base.scheme, base.netloc) or not (
            target.path.startswith(base.path)
        ):
            raise ProtocolError("server sent a pagination link outside the base URL; refused")
        rest = target.path[len(base.path) :]
        return rest + (f"?{target.query}" if target.query else "")

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
        idempotency_key: str | None = None,
        ok: tuple[int, ...] = (),
        hold: float = 0.0,
    ) -> Response:
        """Send one request (with retries when safe) and return the read `Response`.

        Statuses in `ok` are returned as they are; any other non-2xx raises the
        matching `HTTPStatusError` subclass. `hold` is how long the server may
        legitimately keep the request (a long poll); it extends the timeout.
        A `bytes` body is JSON already, sent as it is.
        """
        if self.closed:
            raise ClientClosedError("this AsyncJobClient is closed; create a new one")
        headers = self._headers if body is None else self._json_headers
        if idempotency_key:
            headers = {**headers, "Idempotency-Key": idempotency_key}
        data = body if body is None or isinstance(body, bytes) else wire_json(body).encode()
        request = Request(
            method,
            self._absolute(path, params),
            headers,
            data,
            timeout=self._config.timeout.request + hold,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        sent = False  # whether any attempt may have reached the server
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = await self._send(request)
            except AsyncJobError as exc:
                outcome: int | BaseException = exc
                failure: BaseException = exc
                sent = sent or not isinstance(exc, ConnectionFailedError) or exc.request_sent
                if isinstance(exc, ConnectionFailedError):
                    exc.request_sent = sent
            else:
                code = response.status_code
                if 200 <= code < 300 or code in ok:
                    return response
                outcome, failure = code, _status_error(response, self._config)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = None
            if should_retry(method, path, idempotency_key, outcome):
                elapsed = loop.time() - started
                wait = self._config.retry.delay(attempt, retry_after, elapsed)
            if wait is None:
                raise failure
            what = (
                f"answered {outcome}"
                if isinstance(outcome, int)
                else f"failed ({type(outcome).__name__})"
            )
            logger.debug("%s %s %s; retrying in %.3g s", method, path, what, wait)
            await anyio.sleep(wait)

    def _absolute(self, path: str, params: Mapping[str, str | int] | None) -> str:
        """The escaped absolute URL of `path` with `params` as its query (built as a string)."""
        if not params:
            return self._prefix + path
        if "?" in path:  # a query already: yarl merges the two
            return str(self.url(path).update_query({k: str(v) for k, v in params.items()}))
        return f"{self._prefix}{path}?{_query(params)}"

    async def _send(self, request: Request) -> Response:
        """One attempt: through the transport within its timeout; a redirect is refused."""
        if self.closed:
            raise ClientClosedError("this AsyncJobClient is closed; create a new one")
        self.requests_sent += 1
        try:
            # One deadline for the whole exchange, connecting and body read included.
            async with self._slot(), asyncio.timeout(request.timeout):
                response = await self.transport.handle_request(request)
        except TimeoutError as exc:
            if isinstance(exc, AsyncJobError):
                raise
            # A caller's cancellation due in the same turn wins over this timeout.
            await anyio.lowlevel.checkpoint_if_cancelled()
            raise timed_out(
                request.method, URL(request.url, encoded=True), request.timeout
            ) from exc
        if 300 <= response.status_code < 400:
            raise ProtocolError(
                f"{request.method} {request.path} answered a redirect "
                f"({response.status_code}); redirects are not followed, check base_url"
            )
        return response


def _query(params: Mapping[str, str | int]) -> str:
    """`urlencode(params)`, with names and numbers that need no escaping written directly."""
    if all(type(value) is int and _UNRESERVED.fullmatch(name) for name, value in params.items()):
        return "&".join(f"{name}={value}" for name, value in params.items())
    return urlencode(params)


_STATUS_ERRORS: dict[int, type[HTTPStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: BadRequestError,
    429: RateLimitedError,
}


def short_message(response: Response, token: str) -> str:
    """A one-line summary of an error body: its JSON `detail`, or HTML reduced to text."""
    text = response.text
    message = ""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
        data = None
    if isinstance(data, dict):
        detail = data.get("detail", data.get("error", data.get("message")))
        if detail is not None:
            message = detail if isinstance(detail, str) else json.dumps(detail)
    if not message:
        message = html.unescape(_TAGS.sub(" ", text))
    message = scrub(_SPACE.sub(" ", message).strip(), token)
    if len(message) > 200:
        message = scrub(message[:197], token) + "..."
    return message or "(no details)"


def _status_error(response: Response, config: ClientConfig) -> HTTPStatusError:
    code = response.status_code
    cls = _STATUS_ERRORS.get(code, ServerError if code >= 500 else HTTPStatusError)
    message = short_message(response, config.token)
    if code == 404:
        message += missing_api_hint(config.base_url)
    error = cls(code, message, method=response.method, path=response.path)
    if isinstance(error, RateLimitedError):
        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return error
