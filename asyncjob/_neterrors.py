"""Transport failures in words: the request, its host and port, what went wrong, what to try."""

from __future__ import annotations

import errno
import ssl
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from ._errors import ConnectionFailedError, RequestTimeoutError

__all__ = ["connection_failed", "missing_api_hint", "not_http", "timed_out"]


def _where(url: URL) -> str:
    host = url.host or "?"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{url.port}" if url.port is not None else host


def _shown(method: str, url: URL) -> str:
    return f"{method} {url.with_query(None)}"


def _cause(exc: aiohttp.ClientError, url: URL) -> str:
    where = _where(url)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"the TLS certificate of {where} could not be verified "
            f"({exc.certificate_error.__class__.__name__}); fix the certificate, or for a "
            "test server of your own turn verification off (verify_tls=False)"
        )
    if isinstance(exc, aiohttp.ClientSSLError) or isinstance(
        getattr(exc, "os_error", None), ssl.SSLError
    ):
        return (
            f"TLS handshake with {where} failed: is the server plain http? "
            f"try http://{where}{_base_path(url)}"
        )
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"host name {url.host!r} not found (DNS): check the URL"
    if isinstance(exc, aiohttp.ClientConnectorError):
        code = getattr(exc.os_error, "errno", None)
        if code == errno.ECONNREFUSED:
            return (
                f"cannot connect to {where}: connection refused (is the scheduler running there?)"
            )
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return f"cannot connect to {where}: {reason.lower()}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{where} closed the connection without answering"
    if isinstance(exc, aiohttp.ClientOSError):
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return f"{where} reset the connection"
        return f"connection to {where} failed: {(exc.strerror or type(exc).__name__).lower()}"
    return f"connection to {where} failed ({type(exc).__name__})"


def _base_path(url: URL) -> str:
    """The path up to and including an ``/api/`` segment, when the URL has one."""
    path = url.path
    cut = path.find("/api/")
    return path[: cut + 5] if cut >= 0 else "/"


def connection_failed(exc: aiohttp.ClientError, method: str, url: URL) -> ConnectionFailedError:
    """A `ConnectionFailedError` naming the request, the host and port, and the cause in words.

    Its `reason` is the message without the request, for callers that say
    what they were doing in their own words.
    """
    cause = _cause(exc, url)
    error = ConnectionFailedError(f"{_shown(method, url)}: {cause}")
    error.reason = cause
    # aiohttp raises a connector error only while connecting, before any byte is sent.
    error.request_sent = not isinstance(exc, aiohttp.ClientConnectorError)
    return error


def not_http(method: str, url: URL) -> ConnectionFailedError:
    """The answer was not HTTP; over plain http that is often a TLS-only server."""
    cause = f"the answer from {_where(url)} is not valid HTTP"
    if url.scheme == "http":
        cause += f" (is it an https server? try https://{_where(url)}{_base_path(url)})"
    error = ConnectionFailedError(f"{_shown(method, url)}: {cause}")
    error.reason = cause
    return error


def timed_out(method: str, url: URL, seconds: float) -> RequestTimeoutError:
    """A `RequestTimeoutError` naming the request and its host."""
    cause = f"no answer from {_where(url)}: timed out after {seconds:g} s"
    error = RequestTimeoutError(f"{_shown(method, url)}: {cause}")
    error.reason = cause
    return error


def missing_api_hint(base_url: str) -> str:
    """For a 404: a hint when the base URL does not end in ``/api/``, as the service's does."""
    path = urlsplit(base_url).path
    if path.endswith("/api/"):
        return ""
    return f"; is the base URL missing '/api/'? (got {base_url})"
