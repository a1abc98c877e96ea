"""The local scheduler: an aiohttp server speaking the wire protocol (docs/protocol.md).

`LocalScheduler` serves under ``/api/`` (so its base URL is
``http://127.0.0.1:PORT/api/``), answers every endpoint with the cloud
service's status codes and bodies, executes circuits with an `Executor` and
injects the faults of its `FaultConfig`. It also accepts what an unmodified
``qoro-divi`` ``QoroService`` sends: paths with or without the trailing slash,
its ``job/init/`` fields and its parametric ``circuit_template`` chunks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import math
import random
import re
import secrets
import socket
import struct
import threading
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import anyio
from aiohttp import web
from aiohttp.log import access_logger

from .._config import MAX_PAYLOAD_BYTES
from .._parametric import bind_template
from .._wire import check_ham_map, check_shot_groups, is_loopback
from ._choice import choose_executor, is_synthetic
from ._decode import MAX_DECOMPRESSED_BYTES, Decoder, check_sources, gunzip, unpack
from ._decode import BadRequest as _BadRequest
from ._executors import CircuitTask, Executor
from ._faults import FaultConfig, FaultEvent, FaultInjector, FaultPlan
from ._jobs import TERMINAL, Counters, Job, JobRecord, JobStore, SchedulerStats

__all__ = ["API_PREFIX", "MAX_DECOMPRESSED_BYTES", "LocalScheduler", "ThreadedScheduler"]

logger = logging.getLogger("asyncjob.local")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/api/"
MAX_WATCH_JOBS = 1000
"""Most jobs one `jobs/watch/` request may list."""
MAX_WATCH_SECONDS = 60.0
"""Longest a `jobs/watch/` request is held; a longer `timeout` is clamped."""
SIMULATOR_CLUSTERS: list[dict[str, Any]] = [
    {"name": "qoro_maestro", "access_level": "PUBLIC", "minimum_tier": "FREE"}
]
QPU_SYSTEMS: list[dict[str, Any]] = [
    {"name": "qoro_maestro", "access_level": "PUBLIC", "qpus": []}
]

_PROXY_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_SPARSE_TERM = re.compile(r"([XYZ])(\d+)")


def _error(code: int, detail: str, extra: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"detail": detail, **(extra or {})}, status=code)


def _is_text(value: str) -> bool:
    """False for a string with lone surrogates (JSON allows them; UTF-8 does not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _sparse_to_dense(term: str, n_qubits: int) -> str:
    if term == "I":
        return "I" * n_qubits
    paulis = ["I"] * n_qubits
    end = 0
    for match in _SPARSE_TERM.finditer(term):
        if match.start() != end:
            break
        index = int(match.group(2))
        if index >= n_qubits or paulis[index] != "I":
            raise ValueError(f"term {term!r}: qubit {index} out of range or repeated")
        paulis[index] = match.group(1)
        end = match.end()
    if end != len(term) or not term:
        raise ValueError(f"term {term!r} is not in sparse <Pauli><index> form")
    return "".join(paulis)


def decode_observables(value: object) -> list[list[str]]:
    """The `observables` field: `|`-joined groups, each `@gzs<n>:` compressed or dense."""
    if not isinstance(value, str) or not value:
        raise _BadRequest("observables must be a non-empty string")
    groups: list[list[str]] = []
    for number, group in enumerate(value.split("|")):
        try:
            if group.startswith("@gzs"):
                head, colon, data = group.partition(":")
                if not colon or not head[4:].isdigit():
                    raise ValueError("expected @gzs<number of qubits>:<base64>")
                n_qubits = int(head[4:])
                sparse = gunzip(base64.b64decode(data, validate=True)).decode("utf-8")
                terms = [_sparse_to_dense(term, n_qubits) for term in sparse.split(";")]
            else:
                terms = group.split(";")
                if any(not t or t.strip("IXYZ") for t in terms):
                    raise ValueError("terms must be non-empty strings over I, X, Y, Z")
            if len({len(t) for t in terms}) != 1:
                raise ValueError("terms of one group must all have the same length")
        except (binascii.Error, ValueError, zlib.error) as exc:
            raise _BadRequest(f"observables group {number}: {exc}") from None
        groups.append(terms)
    return groups


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _shots_per_circuit(value: object, n_circuits: int) -> list[int]:
    """Per-circuit shots from `shot_groups`, whose ranges must tile the chunk (wire rule)."""
    try:
        groups = check_shot_groups(value, n_circuits, unit="chunk", ordered=False)
    except (TypeError, ValueError) as exc:
        raise _BadRequest(str(exc)) from None
    shots = [0] * n_circuits
    for start, end, count in groups:
        shots[start:end] = [count] * (end - start)
    return shots


def _resolve_template(template: str, names: list[str], values: list[object], label: str) -> str:
    """Substitute parameter values into a parametric QASM template (divi's payload form)."""
    if len(values) != len(names):
        raise _BadRequest(
            f"parameter set {label!r} has {len(values)} values for {len(names)} parameters"
        )
    numbers: list[float] = []
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _BadRequest(f"parameter set {label!r}: value {value!r} is not a finite number")
        numbers.append(float(value))
    return bind_template(template, names, numbers)


class _App:
    """The routes and handlers of one `LocalScheduler` (built anew at each start)."""

    def __init__(self, scheduler: LocalScheduler) -> None:
        self.s = scheduler
        self.endpoints: dict[Handler, str] = {}

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=16 * 1024 * 1024)
        routes: list[tuple[str, str, Handler, str]] = [
            ("GET", "", self.ping, "ping"),
            ("GET", "qpusystem/", self.qpu_systems, "qpusystem"),
            ("GET", "simulatorcluster/", self.simulator_clusters, "simulatorcluster"),
            ("POST", "job/init/", self.init, "init"),
            ("POST", "job/{job_id}/add_circuits/", self.add_circuits, "add_circuits"),
            ("GET", "job/{job_id}/status/", self.status, "status"),
            ("GET", "job/{job_id}/resultsV2/", self.results, "results"),
            ("POST", "job/{job_id}/cancel/", self.cancel, "cancel"),
            ("DELETE", "job/{job_id}/", self.delete, "delete"),
        ]
        if self.s.watch:
            routes.append(("POST", "jobs/watch/", self.watch, "watch"))
        for method, path, handler, name in routes:
            self.endpoints[handler] = name
            full = API_PREFIX + path
            # Both spellings: divi sends DELETE job/{id} without the slash.
            for variant in (full, full.rstrip("/")):
                app.router.add_route(method, variant, handler)
        return app

    # -- the pipeline every request goes through ----------------------------

    def _endpoint(self, request: web.Request) -> str:
        handler = request.match_info.route.handler
        return self.endpoints.get(handler, "other")

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        s = self.s
        endpoint = self._endpoint(request)
        s._counters.request(endpoint, request.content_length or 0)
        plan = s._injector.plan(endpoint)
        if plan.kind is not None:
            s._counters.fault(plan.kind)
        s._store.notify()
        if plan.latency > 0 and not await s._pause(plan.latency):
            return self._reset(request)
        if plan.kind is not None and plan.phase == "before":
            if plan.kind == "rate_limit":
                return self._rate_limited(plan.retry_after)
            if plan.kind == "error":
                return self._proxy_error(plan.status)
            if plan.kind == "reset":
                return self._reset(request)
            if plan.kind == "hang" and not await s._pause(plan.hang_time):
                return self._reset(request)
        response = await self._handle(request, handler)
        if plan.kind is not None and plan.phase == "after":
            if plan.kind == "error":
                return self._proxy_error(plan.status)
            if plan.kind == "reset":
                return self._reset(request)
            if plan.kind == "hang" and not await s._pause(plan.hang_time):
                return self._reset(request)
            if plan.kind == "truncate":
                return await self._send(request, response, plan, truncate=True)
        if plan.slow_body > 0:
            return await self._send(request, response, plan, truncate=False)
        return response

    async def _handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        expected = self.s.token.encode("utf-8")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            credentials.strip().encode("utf-8"), expected
        ):
            response = _error(401, "invalid or missing bearer token")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        try:
            return await handler(request)
        except _BadRequest as exc:
            return _error(400, exc.detail, exc.extra)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _error(exc.status, exc.reason)
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response

    # -- injected faults -----------------------------------------------------

    @staticmethod
    def _rate_limited(retry_after: float) -> web.Response:
        response = _error(429, "rate limited; retry later")
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
            if start + piece < len(body) and not await self.s._pause(plan.slow_body):
                return self._reset(request)
        await stream.write_eof()
        return stream

    # -- helpers ---------------------------------------------------------------

    @staticmethod
    async def _json_body(request: web.Request, *, limit: int | None = None) -> dict[str, Any]:
        raw = await request.read()
        if limit is not None and len(raw) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
        try:
            body = json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            raise _BadRequest("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _BadRequest("request body must be a JSON object")
        return body

    def _job(self, request: web.Request) -> Job:
        job = self.s._store.get(request.match_info["job_id"])
        if job is None:
            raise web.HTTPNotFound(reason="job not found")
        return job

    # -- endpoints -----------------------------------------------------------

    async def ping(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok", "service": "asyncjob local scheduler"})

    async def qpu_systems(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(QPU_SYSTEMS)

    async def simulator_clusters(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(SIMULATOR_CLUSTERS)

    async def init(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        job_type = body.get("job_type", "EXECUTE")
        if job_type not in ("EXECUTE", "EXPECTATION"):
            raise _BadRequest(
                f"job_type must be EXECUTE or EXPECTATION, got {job_type!r}"
                " (VALIDATE is not supported by the local scheduler)"
            )
        simulator = body.get("simulator_cluster")
        qpu = body.get("qpu_system_name")
        if simulator and qpu:
            raise _BadRequest("give either simulator_cluster or qpu_system_name, not both")
        if qpu:
            if qpu not in {system["name"] for system in QPU_SYSTEMS}:
                raise _BadRequest(f"unknown qpu_system_name {qpu!r}")
            target = {"qpu_system_name": str(qpu)}
        else:
            simulator = simulator or SIMULATOR_CLUSTERS[0]["name"]
            if simulator not in {cluster["name"] for cluster in SIMULATOR_CLUSTERS}:
                raise _BadRequest(f"unknown simulator_cluster {simulator!r}")
            target = {"simulator_cluster": str(simulator)}
        tag = body.get("tag")
        if tag is not None and not isinstance(tag, str):
            raise _BadRequest("tag must be a string")
        options: dict[str, Any] = {
            name: body[name]
            for name in (
                "use_packing",
                "execution_configuration",
                "maestro_config",
                "device_config",
            )
            if name in body
        }
        job, created = self.s._store.create(
            tag=tag or "default",
            job_type=str(job_type),
            target=target,
            options=options,
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        return web.json_response({"job_id": job.id}, status=201 if created else 200)

    @staticmethod
    def _packed_circuits(body: dict[str, Any]) -> dict[str, object] | None:
        """A chunk's `circuits` map (label -> packed circuit), labels checked; None if absent."""
        if "circuits" not in body:
            return None
        circuits = body["circuits"]
        if not isinstance(circuits, dict) or not circuits:
            raise _BadRequest("circuits must be a non-empty object label -> circuit")
        for label in circuits:
            if not label or not _is_text(label):
                raise _BadRequest("circuit labels must be non-empty, valid UTF-8 strings")
        return circuits

    @staticmethod
    def _template_circuits(body: dict[str, Any]) -> dict[str, str]:
        """label -> QASM source of divi's parametric form (a template and parameter sets)."""
        if "circuit_template" not in body:
            raise _BadRequest("the chunk carries no circuits")
        template = unpack(body["circuit_template"], "circuit_template")
        names = body.get("parameter_names", [])
        rows = body.get("parameter_sets")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _BadRequest("parameter_names must be a list of strings")
        if not isinstance(rows, list) or not rows:
            raise _BadRequest("parameter_sets must be a non-empty list")
        out: dict[str, str] = {}
        for row in rows:
            label = row.get("label") if isinstance(row, dict) else None
            values = row.get("values") if isinstance(row, dict) else None
            if (
                not isinstance(label, str)
                or not label
                or not _is_text(label)
                or not isinstance(values, list)
            ):
                raise _BadRequest(f"parameter_sets entry {row!r} is not {{label, values}}")
            if label in out:
                raise _BadRequest(f"duplicate label {label!r} in the chunk")
            out[label] = _resolve_template(template, names, values, label)
        return out

    async def add_circuits(self, request: web.Request) -> web.StreamResponse:
        store = self.s._store
        job = self._job(request)
        body = await self._json_body(request, limit=MAX_PAYLOAD_BYTES)
        key = request.headers.get("Idempotency-Key")
        if key is not None and key in job.chunk_replies:
            self.s._counters.add("duplicate_chunks_refused")
            return web.json_response(job.chunk_replies[key])
        self._check_open(job)

        mode = body.get("mode", "append")
        if mode != "append":
            raise _BadRequest(f"mode must be 'append', got {mode!r}")
        finalized = body.get("finalized", "false")
        if finalized not in ("true", "false", True, False):
            raise _BadRequest(f'finalized must be "true" or "false", got {finalized!r}')
        finalized = finalized in ("true", True)

        packed = self._packed_circuits(body)
        templated = {}
        if packed is None:  # bound off the event loop: a chunk may hold thousands of rows
            templated = await anyio.to_thread.run_sync(self._template_circuits, body)
        labels = list(packed or templated)
        duplicates = sorted(set(labels) & job.labels)
        if duplicates:
            raise _BadRequest(f"duplicate label(s) in job: {duplicates[:5]}")

        given = [
            name for name in ("shots", "shot_groups", "observables") if body.get(name) is not None
        ]
        if len(given) != 1:
            raise _BadRequest(
                "exactly one of shots, shot_groups or observables is required, got "
                + (", ".join(given) or "none")
            )
        shots: list[int] | None = None
        groups: list[list[str]] | None = None
        ham_map: list[tuple[int, int]] | None = None
        if given[0] == "shots":
            count = _int(body["shots"])
            if count is None or count <= 0:
                raise _BadRequest(f"shots must be a positive integer, got {body['shots']!r}")
            shots = [count] * len(labels)
        elif given[0] == "shot_groups":
            shots = _shots_per_circuit(body["shot_groups"], len(labels))
        else:
            groups = decode_observables(body["observables"])
            if body.get("circuit_ham_map") is not None:
                try:
                    ham_map = list(check_ham_map(body["circuit_ham_map"], len(groups)))
                except (TypeError, ValueError) as exc:
                    raise _BadRequest(str(exc)) from None
        if (groups is not None) != (job.job_type == "EXPECTATION"):
            raise _BadRequest(
                "observables require (and are required by) job_type EXPECTATION; "
                f"this job is {job.job_type}"
            )

        if packed is not None:
            circuits = await self.s._decoder.decode(packed)
        else:
            circuits = templated
            # The rows differ from the first only in the finite numbers put in for the
            # parameters, so checking the first circuit checks them all.
            head = next(iter(circuits))
            await anyio.to_thread.run_sync(check_sources, {head: circuits[head]})

        # The circuits were checked off the event loop: re-check what may have changed.
        if store.get(job.id) is not job:
            raise web.HTTPNotFound(reason="job not found")
        if key is not None and key in job.chunk_replies:
            self.s._counters.add("duplicate_chunks_refused")
            return web.json_response(job.chunk_replies[key])
        self._check_open(job)
        duplicates = sorted(set(circuits) & job.labels)
        if duplicates:
            raise _BadRequest(f"duplicate label(s) in job: {duplicates[:5]}")

        first = len(job.circuits)
        tasks: list[CircuitTask] = []
        for offset, (label, source) in enumerate(circuits.items()):
            if groups is None:
                tasks.append(CircuitTask(label, source, shots=shots[offset] if shots else None))
                continue
            index = first + offset
            chosen = [
                g for g, (a, b) in zip(groups, ham_map or [], strict=False) if a <= index < b
            ]
            terms = chosen[0] if chosen else [t for group in groups for t in group]
            tasks.append(CircuitTask(label, source, terms=tuple(terms)))
        reply = store.add_circuits(job, tasks, finalized=finalized, key=key)
        return web.json_response(reply)

    @staticmethod
    def _check_open(job: Job) -> None:
        if job.terminal:
            raise web.HTTPConflict(reason=f"job is {job.status}; no circuits can be added")
        if job.finalized:
            raise web.HTTPConflict(reason="job is already finalized; no circuits can be added")

    async def status(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self._status_body(self._job(request)))

    async def watch(self, request: web.Request) -> web.StreamResponse:
        """Extension: the status of many jobs, answered once one of them is terminal.

        Held until a listed job is terminal or unknown, or `timeout` seconds
        pass; the answer maps every listed id to its status body (null: unknown).
        """
        body = await self._json_body(request)
        ids = body.get("job_ids")
        if (
            not isinstance(ids, list)
            or not 0 < len(ids) <= MAX_WATCH_JOBS
            or not all(isinstance(job_id, str) for job_id in ids)
        ):
            raise _BadRequest(f"job_ids must be a list of 1 to {MAX_WATCH_JOBS} job ids")
        timeout = body.get("timeout", 0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
            raise _BadRequest("timeout must be a number of seconds >= 0")
        store = self.s._store

        def settled() -> bool:
            return any((job := store.get(job_id)) is None or job.terminal for job_id in ids)

        await self.s._hold_until(settled, min(float(timeout), MAX_WATCH_SECONDS))
        jobs = {
            job_id: None if (job := store.get(job_id)) is None else self._status_body(job)
            for job_id in ids
        }
        return web.json_response({"jobs": jobs})

    def _status_body(self, job: Job) -> dict[str, Any]:
        body: dict[str, Any] = {
            "job_id": job.id,
            "status": job.status,
            "tag": job.tag,
            "job_type": job.job_type,
            "finalized": job.finalized,
            "n_circuits": len(job.circuits),
        }
        if job.terminal:
            body["run_time"] = job.run_time
        if job.error:
            body["error"] = job.error
        if self.s.synthetic:
            body["synthetic"] = True  # an extension: the counts are not physics
        return body

    async def results(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if job.status != "COMPLETED" or job.results is None:
            return _error(
                400,
                f"job {job.id} is {job.status}; results are available once it is COMPLETED",
                {"status": job.status},
            )
        limit = self._query_int(request, "limit", 100, minimum=1)
        offset = self._query_int(request, "offset", 0, minimum=0)
        count = len(job.results)
        base = f"{request.url.origin()}{API_PREFIX}job/{quote(job.id, safe='')}/resultsV2/"
        following = offset + limit
        return web.json_response(
            {
                "count": count,
                "next": f"{base}?limit={limit}&offset={following}" if following < count else None,
                "previous": (
                    f"{base}?limit={limit}&offset={max(0, offset - limit)}" if offset > 0 else None
                ),
                "results": job.results[offset:following],
            }
        )

    @staticmethod
    def _query_int(request: web.Request, name: str, default: int, *, minimum: int) -> int:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _BadRequest(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise _BadRequest(f"{name} must be >= {minimum}, got {value}")
        return value

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if job.terminal:
            return _error(409, f"job {job.id} is already {job.status}", {"status": job.status})
        cancelled = self.s._store.cancel(job)
        return web.json_response(
            {"status": "cancelled", "job_id": job.id, "circuits_cancelled": cancelled}
        )

    async def delete(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        self.s._store.delete(job)
        return web.Response(status=204)


class LocalScheduler:
    """A job scheduler on 127.0.0.1 that speaks the cloud service's wire protocol.

    Use it ``async with LocalScheduler(token="t") as s:`` (then ``s.base_url``
    and ``s.token``), or ``with LocalScheduler(...).run_in_thread() as s:`` from
    blocking code. ``stop()`` then ``start()`` restarts it on the same port with
    its jobs intact; ``faults`` can be replaced at any time. ``watch=False``
    serves without the `jobs/watch/` extension (404), like a plain server.
    ``decode_workers=N`` unpacks and checks the circuits of uploaded chunks in N
    worker processes (started with the scheduler) instead of a thread, so that
    chunks uploaded at once are decoded in parallel; the program that starts
    it then needs the usual ``if __name__ == "__main__":`` guard of spawned
    processes. ``executor="auto"`` (the default) simulates with qiskit-aer when
    it is installed and otherwise uses the ``sampler``, whose counts are
    synthetic (`synthetic` is then True and every status body says
    ``"synthetic": true``). ``log_requests=True`` logs each request on the
    ``aiohttp.access`` logger.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        executor: str | Executor = "auto",
        faults: FaultConfig | None = None,
        job_duration: float | tuple[float, float] = 0.0,
        max_concurrent_jobs: int = 4,
        seed: int | None = None,
        allow_remote: bool = False,
        shutdown_timeout: float = 2.0,
        watch: bool = True,
        decode_workers: int = 0,
        log_requests: bool = False,
    ) -> None:
        if not is_loopback(host):
            if not allow_remote:
                raise ValueError(
                    f"refusing to serve on non-loopback host {host!r} without allow_remote=True"
                )
            if not token:
                raise ValueError("serving on a non-loopback host needs an explicit token")
        if max_concurrent_jobs < 1:
            raise ValueError(f"max_concurrent_jobs must be >= 1, got {max_concurrent_jobs!r}")
        self.token = token or secrets.token_urlsafe(24)
        self.host = host
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self.watch = watch
        self.log_requests = log_requests
        self._duration = self._check_duration(job_duration)
        self._rng = random.Random(seed)
        self._injector = FaultInjector(faults or FaultConfig())
        self._counters = Counters()
        self._store = JobStore(
            choose_executor(executor),
            max_concurrent_jobs=max_concurrent_jobs,
            job_duration=self._draw_duration,
            injector=lambda: self._injector,
            counters=self._counters,
        )
        self._decoder = Decoder(decode_workers)
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None

    def __repr__(self) -> str:
        state = "serving" if self._runner is not None else "stopped"
        return f"<LocalScheduler {self.base_url} executor={self.executor.name} {state}>"

    @staticmethod
    def _check_duration(value: float | tuple[float, float]) -> tuple[float, float]:
        low, high = value if isinstance(value, tuple) else (value, value)
        if not 0.0 <= low <= high:
            raise ValueError(f"job_duration must be >= 0 (or a (min, max) range), got {value!r}")
        return (float(low), float(high))

    def _draw_duration(self) -> float:
        low, high = self._duration
        return low if low == high else self._rng.uniform(low, high)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start serving (again, on the same port after a `stop()`)."""
        if self._runner is not None:
            raise RuntimeError("the scheduler is already running")
        self._closing = asyncio.Event()
        await self._decoder.start()
        runner = web.AppRunner(
            _App(self).build(),
            access_log=access_logger if self.log_requests else None,
            shutdown_timeout=self.shutdown_timeout,
        )
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
        except BaseException:
            try:
                await runner.cleanup()
            finally:
                await self._decoder.stop()
            raise
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        self._store.start()
        logger.info("local scheduler serving at %s", self.base_url)

    async def stop(self) -> None:
        """Stop serving; hung requests are dropped and running jobs paused until `start()`."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._closing is not None:
            self._closing.set()
        try:
            await self._store.stop()
            await runner.cleanup()
        finally:
            await self._decoder.stop()

    async def __aenter__(self) -> LocalScheduler:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def run_in_thread(self) -> ThreadedScheduler:
        """This scheduler, to be run on its own event loop thread (a context manager)."""
        return ThreadedScheduler(self)

    async def _pause(self, seconds: float) -> bool:
        """Sleep `seconds`; False if the server started shutting down meanwhile."""
        closing = self._closing
        if closing is None:
            await asyncio.sleep(seconds)
            return True
        if closing.is_set():
            return False
        try:
            await asyncio.wait_for(closing.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _hold_until(self, predicate: Callable[[], bool], seconds: float) -> None:
        """Wait until `predicate()` holds, `seconds` pass or the server starts shutting down."""
        closing = self._closing
        if predicate() or seconds <= 0 or closing is None or closing.is_set():
            return
        waiters = {
            asyncio.ensure_future(self._store.wait_for(predicate)),
            asyncio.ensure_future(closing.wait()),
        }
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    # -- what tests and operators look at --------------------------------------

    @property
    def running(self) -> bool:
        """True while serving."""
        return self._runner is not None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/api/`` (the port is known once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{API_PREFIX}"

    @property
    def decode_worker_pids(self) -> tuple[int, ...]:
        """Process ids of the decode workers (empty when chunks are decoded in a thread)."""
        return self._decoder.pids

    @property
    def executor(self) -> Executor:
        """What runs the circuits."""
        return self._store.executor

    @property
    def synthetic(self) -> bool:
        """True when the counts are synthetic (the ``sampler`` executor), not a simulation."""
        return is_synthetic(self.executor)

    @property
    def faults(self) -> FaultConfig:
        """The fault configuration in force."""
        return self._injector.config

    @faults.setter
    def faults(self, config: FaultConfig) -> None:
        # A new injector: its RNG restarts from config.seed, so runs replay.
        self._injector = FaultInjector(config)

    @property
    def fault_log(self) -> list[FaultEvent]:
        """Faults injected since `faults` was last set, in order."""
        return list(self._injector.log)

    @property
    def stats(self) -> SchedulerStats:
        """A snapshot of the counters."""
        return self._counters.snapshot()

    def jobs(self) -> list[JobRecord]:
        """Snapshots of every job, oldest first."""
        return self._store.records()

    def job(self, job_id: str) -> JobRecord | None:
        """A snapshot of one job, or None."""
        job = self._store.get(job_id)
        return None if job is None else job.record()

    def job_results(self, job_id: str) -> list[dict[str, Any]] | None:
        """The stored (encoded) results of a completed job."""
        job = self._store.get(job_id)
        return None if job is None or job.results is None else list(job.results)

    async def wait_for_status(self, job_id: str, *statuses: str) -> JobRecord:
        """Wait until the job is in one of `statuses` (default: any terminal one).

        Bound the wait with ``anyio.fail_after`` / ``asyncio.timeout``.
        """
        wanted = set(statuses) or set(TERMINAL)

        def reached() -> bool:
            job = self._store.get(job_id)
            if job is None:
                raise KeyError(f"no job {job_id!r}")
            return job.status in wanted

        await self._store.wait_for(reached)
        record = self.job(job_id)
        assert record is not None
        return record

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds.

        It is re-checked whenever a job changes state and whenever a request
        arrives (so predicates on `stats` and `fault_log` work too).
        """
        await self._store.wait_for(predicate)


class ThreadedScheduler:
    """A `LocalScheduler` running on its own event loop thread, for blocking code.

    ``with LocalScheduler(...).run_in_thread() as s:`` starts the thread and
    returns once the server is accepting connections; leaving the block stops it
    and joins the thread. Attributes read from the calling thread (`stats`,
    `jobs()`, `fault_log`) are snapshots; `faults` can be set from any thread.
    """

    def __init__(self, scheduler: LocalScheduler) -> None:
        self.scheduler = scheduler
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"<ThreadedScheduler {self.scheduler!r}>"

    def start(self) -> ThreadedScheduler:
        """Start the loop thread and the server; returns once serving."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.scheduler.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.scheduler.stop()

        self._thread = threading.Thread(
            target=asyncio.run, args=(main(),), name="asyncjob-local-scheduler", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop the server and join the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        thread.join()
        self._loop = None

    def __enter__(self) -> ThreadedScheduler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def call(
        self, factory: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = None
    ) -> T:
        """Run ``factory()`` on the scheduler's loop and return its result."""
        if self._loop is None:
            raise RuntimeError("the scheduler thread is not running")
        return asyncio.run_coroutine_threadsafe(factory(), self._loop).result(timeout)

    def restart(self) -> None:
        """Stop and start the server again on the same port (jobs are kept)."""
        self.call(self.scheduler.stop)
        self.call(self.scheduler.start)

    def wait_for_status(
        self, job_id: str, *statuses: str, timeout: float | None = 10.0
    ) -> JobRecord:
        """Block until the job is in one of `statuses` (default: any terminal one)."""

        async def wait() -> JobRecord:
            with anyio.fail_after(timeout):
                return await self.scheduler.wait_for_status(job_id, *statuses)

        return self.call(wait)

    @property
    def base_url(self) -> str:
        """The server's base URL."""
        return self.scheduler.base_url

    @property
    def token(self) -> str:
        """The bearer token."""
        return self.scheduler.token

    @property
    def port(self) -> int:
        """The bound port."""
        return self.scheduler.port

    @property
    def synthetic(self) -> bool:
        """True when the counts are synthetic (the ``sampler`` executor)."""
        return self.scheduler.synthetic

    @property
    def faults(self) -> FaultConfig:
        """The fault configuration in force."""
        return self.scheduler.faults

    @faults.setter
    def faults(self, config: FaultConfig) -> None:
        self.scheduler.faults = config

    @property
    def fault_log(self) -> list[FaultEvent]:
        """Faults injected since `faults` was last set."""
        return self.scheduler.fault_log

    @property
    def stats(self) -> SchedulerStats:
        """A snapshot of the counters."""
        return self.scheduler.stats

    def jobs(self) -> list[JobRecord]:
        """Snapshots of every job."""
        return self.scheduler.jobs()

    def job(self, job_id: str) -> JobRecord | None:
        """A snapshot of one job, or None."""
        return self.scheduler.job(job_id)
