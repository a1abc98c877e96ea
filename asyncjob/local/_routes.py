"""The routes of the local scheduler: one aiohttp handler per endpoint of the wire protocol.

The handlers read and write the scheduler through its `SchedulerState` (the
job store, the decoder, the counters) and answer with the cloud service's
status codes and bodies (docs/protocol.md). They accept what an unmodified
``qoro-divi`` ``QoroService`` sends: paths with or without the trailing
slash, its ``job/init/`` fields and its parametric ``circuit_template`` chunks.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import anyio
from aiohttp import web

from .._config import MAX_PAYLOAD_BYTES
from .._wire import check_ham_map
from ._chunks import (
    as_int,
    decode_observables,
    packed_circuits,
    shots_per_circuit,
    template_circuits,
)
from ._decode import BadRequest, check_sources
from ._executors import CircuitTask
from ._jobs import Job
from ._middleware import FaultMiddleware, Handler, json_error
from ._state import API_PREFIX, SchedulerState

__all__ = ["MAX_WATCH_JOBS", "MAX_WATCH_SECONDS", "build_app"]

MAX_WATCH_JOBS = 10_000
"""Most jobs one `jobs/watch/` request may list."""
MAX_WATCH_SECONDS = 60.0
"""Longest a `jobs/watch/` request is held; a longer `timeout` is clamped."""
MAX_INLINE_RESULTS = 1000
"""Most results one `jobs/watch/` answer carries inline (`inline_results`), all jobs together."""
SIMULATOR_CLUSTERS: list[dict[str, Any]] = [
    {"name": "qoro_maestro", "access_level": "PUBLIC", "minimum_tier": "FREE"}
]
QPU_SYSTEMS: list[dict[str, Any]] = [
    {"name": "qoro_maestro", "access_level": "PUBLIC", "qpus": []}
]


def build_app(state: SchedulerState, *, watch: bool, first_chunk: bool = True) -> web.Application:
    """The application of one server run (built anew at each start)."""
    return _Routes(state, first_chunk=first_chunk).build(watch=watch)


class _Routes:
    """The handlers of one server run, over the scheduler's state."""

    def __init__(self, state: SchedulerState, *, first_chunk: bool = True) -> None:
        self.state = state
        self.first_chunk = first_chunk
        """Whether `job/init/` takes the `first_chunk` extension (else the field is ignored)."""
        self.endpoints: dict[Handler, str] = {}

    def build(self, *, watch: bool) -> web.Application:
        middleware = FaultMiddleware(self.state, self.endpoints)
        app = web.Application(
            middlewares=[middleware.middleware], client_max_size=16 * 1024 * 1024
        )
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
        if watch:
            routes.append(("POST", "jobs/watch/", self.watch, "watch"))
        for method, path, handler, name in routes:
            self.endpoints[handler] = name
            full = API_PREFIX + path
            # Both spellings: divi sends DELETE job/{id} without the slash.
            for variant in (full, full.rstrip("/")):
                app.router.add_route(method, variant, handler)
        return app

    # -- helpers ---------------------------------------------------------------

    @staticmethod
    async def _json_body(request: web.Request, *, limit: int | None = None) -> dict[str, Any]:
        raw = await request.read()
        if limit is not None and len(raw) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
        try:
            body = json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("request body must be a JSON object")
        return body

    def _job(self, request: web.Request) -> Job:
        job = self.state.store.get(request.match_info["job_id"])
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
        """`job/init/`; with the `first_chunk` extension, its first `add_circuits/` too.

        `"first_chunk": {"idempotency_key": k, "body": <add_circuits body>}` is
        applied as if uploaded with key `k`; the answer then carries its reply
        as `first_chunk`. A refused chunk refuses the whole request, and a job
        this request created is deleted: no empty job is left behind.
        """
        body = await self._json_body(request, limit=MAX_PAYLOAD_BYTES)
        first = body.get("first_chunk") if self.first_chunk else None
        if first is not None and not (
            isinstance(first, dict)
            and isinstance(first.get("body"), dict)
            and isinstance(first.get("idempotency_key", ""), str)
        ):
            raise BadRequest("first_chunk must be {idempotency_key: string, body: object}")
        job_type = body.get("job_type", "EXECUTE")
        if job_type not in ("EXECUTE", "EXPECTATION"):
            raise BadRequest(
                f"job_type must be EXECUTE or EXPECTATION, got {job_type!r}"
                " (VALIDATE is not supported by the local scheduler)"
            )
        simulator = body.get("simulator_cluster")
        qpu = body.get("qpu_system_name")
        if simulator and qpu:
            raise BadRequest("give either simulator_cluster or qpu_system_name, not both")
        if qpu:
            if qpu not in {system["name"] for system in QPU_SYSTEMS}:
                raise BadRequest(f"unknown qpu_system_name {qpu!r}")
            target = {"qpu_system_name": str(qpu)}
        else:
            simulator = simulator or SIMULATOR_CLUSTERS[0]["name"]
            if simulator not in {cluster["name"] for cluster in SIMULATOR_CLUSTERS}:
                raise BadRequest(f"unknown simulator_cluster {simulator!r}")
            target = {"simulator_cluster": str(simulator)}
        tag = body.get("tag")
        if tag is not None and not isinstance(tag, str):
            raise BadRequest("tag must be a string")
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
        job, created = self.state.store.create(
            tag=tag or "default",
            job_type=str(job_type),
            target=target,
            options=options,
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
        answer: dict[str, Any] = {"job_id": job.id}
        if first is not None:
            chunk_key = first.get("idempotency_key") or None
            try:
                answer["first_chunk"] = await self._add_chunk(job, first["body"], chunk_key)
            except BaseException:
                # Not if a repeat of this request (same keys) applied the chunk meanwhile.
                if created and (chunk_key is None or chunk_key not in job.chunk_replies):
                    self.state.store.delete(job)
                raise
        return web.json_response(answer, status=201 if created else 200)

    async def add_circuits(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        body = await self._json_body(request, limit=MAX_PAYLOAD_BYTES)
        reply = await self._add_chunk(job, body, request.headers.get("Idempotency-Key"))
        return web.json_response(reply)

    async def _add_chunk(self, job: Job, body: dict[str, Any], key: str | None) -> dict[str, Any]:
        """`add_circuits/` of `body` to `job`: its reply (the first one again for a known key)."""
        store = self.state.store
        if key is not None and key in job.chunk_replies:
            self.state.counters.add("duplicate_chunks_refused")
            return job.chunk_replies[key]
        self._check_open(job)

        mode = body.get("mode", "append")
        if mode != "append":
            raise BadRequest(f"mode must be 'append', got {mode!r}")
        finalized = body.get("finalized", "false")
        if finalized not in ("true", "false", True, False):
            raise BadRequest(f'finalized must be "true" or "false", got {finalized!r}')
        finalized = finalized in ("true", True)

        packed = packed_circuits(body)
        templated = {}
        if packed is None:  # bound off the event loop: a chunk may hold thousands of rows
            templated = await anyio.to_thread.run_sync(template_circuits, body)
        labels = list(packed or templated)
        duplicates = sorted(set(labels) & job.labels)
        if duplicates:
            raise BadRequest(f"duplicate label(s) in job: {duplicates[:5]}")

        given = [
            name for name in ("shots", "shot_groups", "observables") if body.get(name) is not None
        ]
        if len(given) != 1:
            raise BadRequest(
                "exactly one of shots, shot_groups or observables is required, got "
                + (", ".join(given) or "none")
            )
        shots: list[int] | None = None
        groups: list[list[str]] | None = None
        ham_map: list[tuple[int, int]] | None = None
        if given[0] == "shots":
            count = as_int(body["shots"])
            if count is None or count <= 0:
                raise BadRequest(f"shots must be a positive integer, got {body['shots']!r}")
            shots = [count] * len(labels)
        elif given[0] == "shot_groups":
            shots = shots_per_circuit(body["shot_groups"], len(labels))
        else:
            groups = decode_observables(body["observables"])
            if body.get("circuit_ham_map") is not None:
                try:
                    ham_map = list(check_ham_map(body["circuit_ham_map"], len(groups)))
                except (TypeError, ValueError) as exc:
                    raise BadRequest(str(exc)) from None
        if (groups is not None) != (job.job_type == "EXPECTATION"):
            raise BadRequest(
                "observables require (and are required by) job_type EXPECTATION; "
                f"this job is {job.job_type}"
            )

        if packed is not None:
            circuits = await self.state.decoder.decode(packed)
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
            self.state.counters.add("duplicate_chunks_refused")
            return job.chunk_replies[key]
        self._check_open(job)
        duplicates = sorted(set(circuits) & job.labels)
        if duplicates:
            raise BadRequest(f"duplicate label(s) in job: {duplicates[:5]}")

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
        return store.add_circuits(job, tasks, finalized=finalized, key=key)

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
        pass; the answer maps every listed id to its status body (null: unknown),
        or with `"settled_only": true` only the ids of jobs terminal or unknown.
        With `"inline_results": n`, a COMPLETED job with at most n results also
        carries them as `results_page` (its first `resultsV2/` page of size n),
        up to `MAX_INLINE_RESULTS` results in the answer: the client then needs
        no results request for it. With both fields, such a job whose page no
        longer fits is left out, as if still running, and `"more": true` tells
        the client to ask again at once: the next round carries it, rather than
        the client fetching thousands of results one job at a time.
        """
        body = await self._json_body(request)
        ids = body.get("job_ids")
        if (
            not isinstance(ids, list)
            or not 0 < len(ids) <= MAX_WATCH_JOBS
            or not all(isinstance(job_id, str) for job_id in ids)
        ):
            raise BadRequest(f"job_ids must be a list of 1 to {MAX_WATCH_JOBS} job ids")
        timeout = body.get("timeout", 0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
            raise BadRequest("timeout must be a number of seconds >= 0")
        settled_only = body.get("settled_only", False)
        if not isinstance(settled_only, bool):
            raise BadRequest("settled_only must be true or false")
        inline = body.get("inline_results", 0)
        if isinstance(inline, bool) or not isinstance(inline, int) or inline < 0:
            raise BadRequest("inline_results must be an integer >= 0")
        store = self.state.store

        def settled() -> bool:
            return any((job := store.get(job_id)) is None or job.terminal for job_id in ids)

        await self.state.hold_until(settled, min(float(timeout), MAX_WATCH_SECONDS))
        jobs = {
            job_id: None if job is None else self._status_body(job)
            for job_id in ids
            if (job := store.get(job_id)) is None or job.terminal or not settled_only
        }
        budget = MAX_INLINE_RESULTS if inline else 0
        later: list[str] = []
        for job_id, entry in jobs.items():
            job = store.get(job_id)
            if entry is None or job is None or job.status != "COMPLETED" or job.results is None:
                continue
            if len(job.results) <= min(inline, budget):
                entry["results_page"] = self._results_page(request, job, inline, 0)
                budget -= len(job.results)
            elif settled_only and len(job.results) <= min(inline, MAX_INLINE_RESULTS):
                # Its page did not fit, but fits a round of its own: told in a later round
                # (the first such job of a round always fits, so every round makes progress).
                later.append(job_id)
        for job_id in later:
            del jobs[job_id]
        return web.json_response({"jobs": jobs, "more": True} if later else {"jobs": jobs})

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
        if self.state.synthetic:
            body["synthetic"] = True  # an extension: the counts are not physics
        return body

    async def results(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if job.status != "COMPLETED" or job.results is None:
            return json_error(
                400,
                f"job {job.id} is {job.status}; results are available once it is COMPLETED",
                {"status": job.status},
            )
        limit = self._query_int(request, "limit", 100, minimum=1)
        offset = self._query_int(request, "offset", 0, minimum=0)
        return web.json_response(self._results_page(request, job, limit, offset))

    @staticmethod
    def _results_page(request: web.Request, job: Job, limit: int, offset: int) -> dict[str, Any]:
        """The `resultsV2/` page of `limit` of a COMPLETED job's results from `offset`."""
        results: list[Any] = job.results or []
        count = len(results)
        base = f"{request.url.origin()}{API_PREFIX}job/{quote(job.id, safe='')}/resultsV2/"
        following = offset + limit
        return {
            "count": count,
            "next": f"{base}?limit={limit}&offset={following}" if following < count else None,
            "previous": (
                f"{base}?limit={limit}&offset={max(0, offset - limit)}" if offset > 0 else None
            ),
            "results": results[offset:following],
        }

    @staticmethod
    def _query_int(request: web.Request, name: str, default: int, *, minimum: int) -> int:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise BadRequest(f"{name} must be >= {minimum}, got {value}")
        return value

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        if job.terminal:
            return json_error(409, f"job {job.id} is already {job.status}", {"status": job.status})
        cancelled = self.state.store.cancel(job)
        return web.json_response(
            {"status": "cancelled", "job_id": job.id, "circuits_cancelled": cancelled}
        )

    async def delete(self, request: web.Request) -> web.StreamResponse:
        job = self._job(request)
        self.state.store.delete(job)
        return web.Response(status=204)
