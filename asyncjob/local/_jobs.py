"""The local scheduler's job store, execution queue and counters.

Jobs live in memory for the life of the `LocalScheduler` object, across
`stop()`/`start()`: a restart re-queues finalized jobs that had not finished,
as a real service backed by a database would. At most `max_concurrent_jobs`
execute at once; the rest wait, first finalized first served. The store is
mutated only on the event loop thread; snapshots (`records()`, `snapshot()`) are
taken under a lock so other threads can read them.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
import attrs

from .._histogram import encode_histogram
from ._executors import CircuitTask, Counts, ExecutionAborted, Executor, Outcome
from ._faults import FaultInjector

__all__ = ["TERMINAL", "Counters", "Job", "JobRecord", "JobStore", "SchedulerStats"]

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "INSUFFICIENT_CREDITS", "TIMED_OUT"})


@attrs.frozen
class SchedulerStats:
    """An operator's view of the scheduler: what happened since it was created."""

    jobs_created: int = 0
    jobs_finalized: int = 0
    jobs_cancelled: int = 0
    jobs_completed: int = 0
    jobs_failed: int = 0
    jobs_deleted: int = 0
    duplicate_inits_refused: int = 0
    """`job/init/` requests whose `Idempotency-Key` was already known (no new job)."""
    duplicate_chunks_refused: int = 0
    """`add_circuits/` chunks whose `Idempotency-Key` was already applied (ignored)."""
    requests_total: int = 0
    bytes_received: int = 0
    """Request body bytes received (their `Content-Length`), all requests together."""
    requests_by_endpoint: Mapping[str, int] = attrs.field(factory=dict)
    faults_injected: Mapping[str, int] = attrs.field(factory=dict)
    """Injected faults by kind: rate_limit, error, reset, hang, truncate, fail."""

    @property
    def polls(self) -> int:
        """Requests that asked after jobs: `status` and `watch` (one long poll, many jobs)."""
        return self.requests_by_endpoint.get("status", 0) + self.requests_by_endpoint.get(
            "watch", 0
        )

    @property
    def total_faults(self) -> int:
        """Every fault injected, all kinds together."""
        return sum(self.faults_injected.values())


class Counters:
    """Thread-safe mutable counters behind `SchedulerStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}
        self._by_endpoint: dict[str, int] = {}
        self._faults: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        """Increment the counter `name` (a `SchedulerStats` field)."""
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def request(self, endpoint: str, body_bytes: int = 0) -> None:
        """Count one request to `endpoint`, with a body of `body_bytes`."""
        with self._lock:
            self._values["requests_total"] = self._values.get("requests_total", 0) + 1
            self._values["bytes_received"] = self._values.get("bytes_received", 0) + body_bytes
            self._by_endpoint[endpoint] = self._by_endpoint.get(endpoint, 0) + 1

    def fault(self, kind: str) -> None:
        """Count one injected fault of `kind`."""
        with self._lock:
            self._faults[kind] = self._faults.get(kind, 0) + 1

    def snapshot(self) -> SchedulerStats:
        """A consistent, immutable copy."""
        with self._lock:
            return SchedulerStats(
                **self._values,
                requests_by_endpoint=dict(self._by_endpoint),
                faults_injected=dict(self._faults),
            )


@attrs.frozen
class JobRecord:
    """A read-only snapshot of one job, for tests and operators."""

    id: str
    status: str
    finalized: bool
    labels: tuple[str, ...]
    tag: str
    job_type: str
    error: str | None = None
    run_time: float | None = None
    finished_at: float | None = None
    """When the job became terminal (`time.time()`), or None."""


@attrs.define(eq=False)
class Job:
    """One job's mutable state (owned by the event loop thread)."""

    id: str
    tag: str
    job_type: str
    target: dict[str, str]
    options: dict[str, Any]
    idempotency_key: str | None = None
    created_at: float = attrs.field(factory=time.time)
    status: str = "PENDING"
    finalized: bool = False
    circuits: list[CircuitTask] = attrs.field(factory=list)
    labels: set[str] = attrs.field(factory=set)
    chunk_replies: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """Idempotency-Key of each applied chunk -> the reply it got."""
    results: list[dict[str, Any]] | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    duration: float = 0.0
    will_fail: bool = False
    finalize_order: int = 0
    task: asyncio.Task[None] | None = None

    @property
    def terminal(self) -> bool:
        """True once the job can no longer change state."""
        return self.status in TERMINAL

    @property
    def run_time(self) -> float | None:
        """Seconds from start to finish, once terminal (0.0 if it never started)."""
        if not self.terminal:
            return None
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return round(self.finished_at - self.started_at, 6)

    def record(self) -> JobRecord:
        """A snapshot."""
        return JobRecord(
            id=self.id,
            status=self.status,
            finalized=self.finalized,
            labels=tuple(task.label for task in self.circuits),
            tag=self.tag,
            job_type=self.job_type,
            error=self.error,
            run_time=self.run_time,
            finished_at=self.finished_at,
        )


def _build_results(tasks: list[CircuitTask], outcomes: list[Outcome]) -> list[dict[str, Any]]:
    if len(outcomes) != len(tasks):
        raise RuntimeError(f"executor returned {len(outcomes)} results for {len(tasks)} circuits")
    results: list[dict[str, Any]] = []
    for task, outcome in zip(tasks, outcomes, strict=True):
        if isinstance(outcome, Counts):
            payload: dict[str, Any] = dict(encode_histogram(outcome.counts, outcome.n_bits))
        else:
            payload = dict(outcome.values)
        results.append({"label": task.label, "results": payload})
    return results


class JobStore:
    """Jobs by id, init idempotency keys, and the bounded execution queue."""

    def __init__(
        self,
        executor: Executor,
        *,
        max_concurrent_jobs: int,
        job_duration: Callable[[], float],
        injector: Callable[[], FaultInjector],
        counters: Counters,
    ) -> None:
        self.executor = executor
        self.max_concurrent_jobs = max_concurrent_jobs
        self._job_duration = job_duration
        self._injector = injector
        self._counters = counters
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._init_keys: dict[str, str] = {}
        self._finalized = 0
        self._slots: asyncio.Semaphore | None = None
        self._changed: asyncio.Event | None = None
        self._running = False

    # -- lookup -----------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        return self._jobs.get(job_id)

    def records(self) -> list[JobRecord]:
        """Snapshots of every job, oldest first."""
        with self._lock:
            jobs = list(self._jobs.values())
        return [job.record() for job in jobs]

    # -- lifecycle of the queue -------------------------------------------

    def start(self) -> None:
        """Start executing; re-queue finalized jobs left unfinished by a `stop()`."""
        self._slots = asyncio.Semaphore(self.max_concurrent_jobs)
        self._changed = asyncio.Event()
        self._running = True
        pending = sorted(
            (job for job in self._jobs.values() if job.finalized and not job.terminal),
            key=lambda job: job.finalize_order,
        )
        for job in pending:
            job.status = "PENDING"
            self._launch(job)

    async def stop(self) -> None:
        """Stop executing: running jobs go back to PENDING, to resume on `start()`."""
        self._running = False
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for job in self._jobs.values():
            job.task = None
            if job.status == "RUNNING":
                job.status = "PENDING"
                job.started_at = None
        self.notify()

    def notify(self) -> None:
        """Wake every `wait_for` to re-check its predicate."""
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds; re-checked at every job state change."""
        while not predicate():
            if self._changed is None:
                raise RuntimeError("the scheduler is not running")
            await self._changed.wait()

    # -- mutations --------------------------------------------------------

    def create(
        self,
        *,
        tag: str,
        job_type: str,
        target: dict[str, str],
        options: dict[str, Any],
        idempotency_key: str | None,
    ) -> tuple[Job, bool]:
        """A new job, or the one already created with this idempotency key (then False)."""
        if idempotency_key is not None:
            known = self._init_keys.get(idempotency_key)
            if known is not None and known in self._jobs:
                self._counters.add("duplicate_inits_refused")
                return self._jobs[known], False
        job = Job(
            id=str(uuid.uuid4()),
            tag=tag,
            job_type=job_type,
            target=target,
            options=options,
            idempotency_key=idempotency_key,
        )
        with self._lock:
            self._jobs[job.id] = job
            if idempotency_key is not None:
                self._init_keys[idempotency_key] = job.id
        self._counters.add("jobs_created")
        self.notify()
        return job, True

    def add_circuits(
        self, job: Job, tasks: Iterable[CircuitTask], *, finalized: bool, key: str | None
    ) -> dict[str, Any]:
        """Append a validated chunk; finalize and queue the job if asked."""
        added = list(tasks)
        with self._lock:
            job.circuits.extend(added)
            job.labels.update(task.label for task in added)
        reply = {"job_id": job.id, "circuits_added": len(added)}
        if key is not None:
            job.chunk_replies[key] = reply
        if finalized:
            job.finalized = True
            self._finalized += 1
            job.finalize_order = self._finalized
            job.duration = self._job_duration()
            injector = self._injector()
            job.will_fail = injector.job_fails()
            self._counters.add("jobs_finalized")
            self._launch(job)
        self.notify()
        return reply

    def cancel(self, job: Job) -> int:
        """Cancel a job that is not terminal; returns how many circuits were cancelled."""
        job.status = "CANCELLED"
        job.finished_at = time.time()
        if job.task is not None:
            job.task.cancel()
        self._counters.add("jobs_cancelled")
        self.notify()
        return len(job.circuits)

    def delete(self, job: Job) -> None:
        """Forget a job (cancelling its execution)."""
        if job.task is not None:
            job.task.cancel()
        with self._lock:
            self._jobs.pop(job.id, None)
            if job.idempotency_key is not None:
                self._init_keys.pop(job.idempotency_key, None)
        self._counters.add("jobs_deleted")
        self.notify()

    # -- execution --------------------------------------------------------

    def _launch(self, job: Job) -> None:
        if self._running:
            job.task = asyncio.get_running_loop().create_task(
                self._execute(job), name=f"asyncjob-local-job-{job.id}"
            )

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        job.status = status
        job.error = error
        job.finished_at = time.time()
        self._counters.add("jobs_completed" if status == "COMPLETED" else "jobs_failed")
        self.notify()

    async def _execute(self, job: Job) -> None:
        assert self._slots is not None
        async with self._slots:
            if job.status != "PENDING" or job.id not in self._jobs:
                return
            job.status = "RUNNING"
            job.started_at = time.time()
            self.notify()
            if job.duration > 0:
                await asyncio.sleep(job.duration)
            if job.will_fail:
                self._counters.fault("fail")
                self._injector().record_job_failure(job.id)
                self._finish(job, "FAILED", "injected failure (fail_rate)")
                return
            tasks = list(job.circuits)
            cancelled = threading.Event()
            executor = self.executor

            def work() -> list[dict[str, Any]]:
                return _build_results(tasks, executor.run(tasks, cancelled))

            try:
                results = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            except ExecutionAborted:
                return
            except Exception as exc:  # the executor failed: the job fails, the server stays up
                self._finish(job, "FAILED", f"{type(exc).__name__}: {exc}"[:500])
                return
            if job.status != "RUNNING":
                return
            job.results = results
            self._finish(job, "COMPLETED")
