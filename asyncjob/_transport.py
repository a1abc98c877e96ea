"""HTTP transport: one aiohttp session, per-request timeouts, retries, error mapping.

Every request is bounded by `Timeout.request`; retries follow PROTOCOL.md
(safe methods, and POSTs carrying an `Idempotency-Key`); response bodies are
read up to a cap; redirects are never followed (the token must not travel to
another host); error messages are short, HTML-free and token-free.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import anyio
from yarl import URL

from ._config import ClientConfig
from ._errors import (
    AsyncJobError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    HTTPStatusError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
)
from ._models import Response

__all__ = ["Transport", "job_path"]

logger = logging.getLogger("asyncjob")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]*>", re.S | re.I)
_SPACE = re.compile(r"\s+")


def job_path(job_id: str, endpoint: str = "") -> str:
    """`job/{id}/{endpoint}` with the id escaped so it can never change the path."""
    if not isinstance(job_id, str) or not job_id or job_id in (".", ".."):
        raise ValueError(f"invalid job id {job_id!r}")
    return f"job/{quote(job_id, safe='')}/{endpoint}"


class Transport:
    """Sends requests to the scheduler; owns the aiohttp session and its connection pool."""

    def __init__(self, config: ClientConfig) -> None:
        self._config = config
        self._base = URL(config.base_url)
        self._session: aiohttp.ClientSession | None = None
        self.requests_sent = 0

    async def open(self) -> None:
        """Create the session (inside the running loop, as aiohttp requires)."""
        if self._session is None or self._session.closed:
            limits = self._config.limits
            connector = aiohttp.TCPConnector(
                limit=limits.max_connections, ssl=self._config.verify_tls
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={
                    "Authorization": f"Bearer {self._config.token}",
                    "User-Agent": "asyncjob/0.1",
                },
                raise_for_status=False,
                trust_env=False,
            )

    async def aclose(self) -> None:
        """Close the session and its pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str) -> URL:
        """Absolute URL of `path` (already escaped) under the base URL."""
        return URL(str(self._base) + path, encoded=True)

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
        retry: bool | None = None,
        ok: tuple[int, ...] = (),
        hold: float = 0.0,
    ) -> Response:
        """Send one request (with retries when safe) and return the read `Response`.

        Statuses in `ok` are returned as they are; any other non-2xx raises the
        matching `HTTPStatusError` subclass. `hold` is how long the server may
        legitimately keep the request (a long poll); it extends the timeout.
        """
        if retry is None:
            retry = method in ("GET", "DELETE", "HEAD") or idempotency_key is not None
        policy = self._config.retry
        attempts = policy.attempts if retry else 1
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if data is not None:
            headers["Content-Type"] = "application/json"
        url = self.url(path)
        if params:
            url = url.update_query({k: str(v) for k, v in params.items()})
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = await self._send(method, url, data, headers, hold)
            except AsyncJobError as exc:
                if attempt >= attempts or not isinstance(
                    exc, RequestTimeoutError | ConnectionFailedError
                ):
                    raise
                logger.debug("%s %s failed (%s); retrying", method, path, type(exc).__name__)
            else:
                code = response.status_code
                if 200 <= code < 300 or code in ok:
                    return response
                if attempt >= attempts or code not in RETRY_STATUSES:
                    raise _status_error(response, self._config.token)
                retry_after = _retry_after(response.headers.get("Retry-After"))
                logger.debug("%s %s answered %s; retrying", method, path, code)
            await anyio.sleep(policy.backoff(attempt, retry_after))

    async def _send(
        self,
        method: str,
        url: URL,
        data: bytes | None,
        headers: Mapping[str, str],
        hold: float = 0.0,
    ) -> Response:
        await self.open()
        assert self._session is not None
        timeout = self._config.timeout
        client_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout.connect, sock_connect=timeout.connect
        )
        path = url.path
        start = time.perf_counter()
        self.requests_sent += 1
        malformed = False
        try:
            # One deadline for the whole exchange, connecting and body read included.
            with anyio.fail_after(timeout.request + hold):
                async with self._session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    allow_redirects=False,
                    timeout=client_timeout,
                ) as resp:
                    text = await self._read(resp, method, path)
                    response = Response(
                        status_code=resp.status,
                        headers=dict(resp.headers),
                        text=text,
                        method=method,
                        path=path,
                    )
        except TimeoutError as exc:
            raise RequestTimeoutError(
                f"{method} {path} timed out after {timeout.request + hold:g} s"
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise ConnectionFailedError(f"{method} {path}: response body cut short") from exc
        except aiohttp.ClientResponseError:
            # Its repr shows the request's headers, the token among them: not chained.
            malformed = True
        except aiohttp.ClientError as exc:
            raise ConnectionFailedError(
                f"{method} {path}: connection failed ({type(exc).__name__})"
            ) from exc
        if malformed:
            raise ConnectionFailedError(f"{method} {path}: the answer is not valid HTTP")
        logger.debug(
            "%s %s -> %s in %.1f ms",
            method,
            path,
            response.status_code,
            (time.perf_counter() - start) * 1000,
        )
        if 300 <= response.status_code < 400:
            raise ProtocolError(
                f"{method} {path} answered a redirect ({response.status_code}); "
                "redirects are not followed, check base_url"
            )
        return response

    async def _read(self, resp: aiohttp.ClientResponse, method: str, path: str) -> str:
        cap = self._config.limits.max_response_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise ProtocolError(
                f"{method} {path}: response of {resp.content_length} bytes is over the "
                f"{cap}-byte limit"
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if size > cap:
                raise ProtocolError(f"{method} {path}: response is over the {cap}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


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
    message = _SPACE.sub(" ", message).strip()
    if token:
        message = message.replace(token, "***")
    if len(message) > 200:
        message = message[:197] + "..."
    return message or "(no details)"


def _status_error(response: Response, token: str) -> HTTPStatusError:
    code = response.status_code
    cls = _STATUS_ERRORS.get(code, ServerError if code >= 500 else HTTPStatusError)
    error = cls(code, short_message(response, token), method=response.method, path=response.path)
    if isinstance(error, RateLimitedError):
        error.retry_after = _retry_after(response.headers.get("Retry-After"))
    return error
