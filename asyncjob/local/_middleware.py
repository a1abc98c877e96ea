"""The pipeline every request of the local scheduler goes through.

It counts the request, draws the faults of the scheduler's `FaultConfig` for
its endpoint and injects them (latency, 429, proxy error pages, resets, hangs,
truncated or slow bodies) before or after the handler, checks the bearer
token, and turns a handler's `BadRequest` or HTTP error into a JSON answer.
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._decode import BadRequest
from ._faults import FaultPlan
from ._state import SchedulerState

__all__ = ["FaultMiddleware", "Handler", "json_error"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_PROXY_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def json_error(code: int, detail: str, extra: dict[str, Any] | None = None) -> web.Response:
    """An error answer with the service's JSON body ``{"detail": ...}``."""
    return web.json_response({"detail": detail, **(extra or {})}, status=code)


class FaultMiddleware:
    """Counts, fault injection, authentication and error answers for one server.

    `endpoints` names the endpoint of each handler (for the counters and the
    per-endpoint faults); a request no handler matched counts as ``"other"``.
    """

    def __init__(self, state: SchedulerState, endpoints: dict[Handler, str]) -> None:
        self.state = state
        self.endpoints = endpoints

    def _endpoint(self, request: web.Request) -> str:
        handler = request.match_info.route.handler
        return self.endpoints.get(handler, "other")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        s = self.state
        endpoint = self._endpoint(request)
        s.counters.request(endpoint, request.content_length or 0)
        plan = s.injector.plan(endpoint)
        if plan.kind is not None:
            s.counters.fault(plan.kind)
        s.store.notify()
        if plan.latency > 0 and not await s.pause(plan.latency):
            return self._reset(request)
        if plan.kind is not None and plan.phase == "before":
            if plan.kind == "rate_limit":
                return self._rate_limited(plan.retry_after)
            failed = await self._fail(request, plan)
            if failed is not None:
                return failed
        response = await self._handle(request, handler)
        if plan.kind is not None and plan.phase == "after":
            if plan.kind == "truncate":
                return await self._send(request, response, plan, truncate=True)
            failed = await self._fail(request, plan)
            if failed is not None:
                return failed
        if plan.slow_body > 0:
            return await self._send(request, response, plan, truncate=False)
        return response

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        expected = self.state.token.encode("utf-8")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credentials.strip().encode("utf-8"), expected
        ):
            response = json_error(401, "invalid or missing bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        try:
            return await handler(request)
        except BadRequest as exc:
            return json_error(400, exc.detail, exc.extra)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = json_error(exc.status, exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response

    # -- injected faults -----------------------------------------------------

    async def _fail(self, request: web.Request, plan: FaultPlan) -> web.StreamResponse | None:
        """The answer of an `error`, `reset` or `hang` fault; None lets the request through."""
        if plan.kind == "error":
            return self._proxy_error(plan.status)
        if plan.kind == "reset" or (
            plan.kind == "hang" and not await self.state.pause(plan.hang_time)
        ):
            return self._reset(request)
        return None

    @staticmethod
    def _rate_limited(retry_after: float) -> web.Response:
        response = json_error(429, "rate limited; retry later")
        # Plain decimal seconds ("2", "0.05"), never an exponent.
        response.headers["Retry-After"] = f"{retry_after:.6f}".rstrip("0").rstrip(".") or "0"
        return response

    @staticmethod
    def _proxy_error(status: int) -> web.Response:
        reason = "Bad Gateway" if status == 502 else "Service Temporarily Unavailable"
        return web.Response(
            status=status,
            text=_PROXY_PAGE.format(status=status, reason=reason),
            content_type="text/html",
        )

    @staticmethod
    def _reset(request: web.Request) -> web.Response:
        """Drop the connection without answering (RST where the OS allows)."""
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # aiohttp fails to write this to the closed transport and moves on.
        return web.Response(status=500)

    async def _send(
        self,
        request: web.Request,
        response: web.StreamResponse,
        plan: FaultPlan,
        *,
        truncate: bool,
    ) -> web.StreamResponse:
        """Send `response` slowly in pieces, or only its first half (then close)."""
        body = response.body if isinstance(response, web.Response) else None
        if not isinstance(body, bytes | bytearray):
            if truncate:
                return self._reset(request)
            return response
        stream = web.StreamResponse(status=response.status, reason=response.reason)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding"):
                stream.headers.add(name, value)
        stream.content_length = len(body)
        await stream.prepare(request)
        if truncate:
            await stream.write(bytes(body[: len(body) // 2]))
            if request.transport is not None:
                request.transport.close()  # flushes what was written, then FIN
            return stream
        piece = plan.slow_body_piece
        for start in range(0, len(body), piece):
            await stream.write(bytes(body[start : start + piece]))
            if start + piece < len(body) and not await self.state.pause(plan.slow_body):
                return self._reset(request)
        await stream.write_eof()
        return stream
