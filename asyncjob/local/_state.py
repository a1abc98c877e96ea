"""The state of one local scheduler, shared by its routes, middleware and views.

`SchedulerState` is the explicit interface the request handlers work
through: the token, the job store, the counters, the fault injector in force,
the chunk decoder and the shutdown signal. `SchedulerView` is what tests and
operators read of a scheduler (snapshots, safe from any thread); both
`LocalScheduler` and `ThreadedScheduler` are views of the same state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ._choice import is_synthetic
from ._decode import Decoder
from ._executors import Executor
from ._faults import FaultConfig, FaultEvent, FaultInjector
from ._jobs import Counters, JobRecord, JobStore, SchedulerStats

__all__ = ["API_PREFIX", "SchedulerState", "SchedulerView"]

API_PREFIX = "/api/"


class SchedulerState:
    """What a scheduler's server reads and writes; it outlives stops and restarts."""

    def __init__(
        self,
        *,
        token: str,
        host: str,
        port: int,
        executor: Executor,
        max_concurrent_jobs: int,
        job_duration: Callable[[], float],
        faults: FaultConfig,
        decode_workers: int,
    ) -> None:
        self.token = token
        self.host = host
        self.port = port
        self.injector = FaultInjector(faults)
        self.counters = Counters()
        self.store = JobStore(
            executor,
            max_concurrent_jobs=max_concurrent_jobs,
            job_duration=job_duration,
            injector=lambda: self.injector,
            counters=self.counters,
        )
        self.decoder = Decoder(decode_workers)
        self.closing: asyncio.Event | None = None
        """Set when the server starts shutting down (a new one at each start)."""

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/api/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{API_PREFIX}"

    @property
    def synthetic(self) -> bool:
        """True when the counts are synthetic (the ``sampler`` executor)."""
        return is_synthetic(self.store.executor)

    async def pause(self, seconds: float) -> bool:
        """Sleep `seconds`; False if the server started shutting down meanwhile."""
        closing = self.closing
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

    async def hold_until(self, predicate: Callable[[], bool], seconds: float) -> None:
        """Wait until `predicate()` holds, `seconds` pass or the server starts shutting down."""
        closing = self.closing
        if predicate() or seconds <= 0 or closing is None or closing.is_set():
            return
        waiters = {
            asyncio.ensure_future(self.store.wait_for(predicate)),
            asyncio.ensure_future(closing.wait()),
        }
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)


class SchedulerView:
    """What tests and operators read of a scheduler (snapshots), and its faults."""

    _state: SchedulerState

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/api/`` (the port is known once started)."""
        return self._state.base_url

    @property
    def token(self) -> str:
        """The bearer token."""
        return self._state.token

    @property
    def port(self) -> int:
        """The bound port (0 before the first start if none was asked for)."""
        return self._state.port

    @property
    def synthetic(self) -> bool:
        """True when the counts are synthetic (the ``sampler`` executor), not a simulation."""
        return self._state.synthetic

    @property
    def faults(self) -> FaultConfig:
        """The fault configuration in force; it can be replaced at any time, from any thread."""
        return self._state.injector.config

    @faults.setter
    def faults(self, config: FaultConfig) -> None:
        # A new injector: its RNG restarts from config.seed, so runs replay.
        self._state.injector = FaultInjector(config)

    @property
    def fault_log(self) -> list[FaultEvent]:
        """Faults injected since `faults` was last set, in order."""
        return list(self._state.injector.log)

    @property
    def stats(self) -> SchedulerStats:
        """A snapshot of the counters."""
        return self._state.counters.snapshot()

    def jobs(self) -> list[JobRecord]:
        """Snapshots of every job, oldest first."""
        return self._state.store.records()

    def job(self, job_id: str) -> JobRecord | None:
        """A snapshot of one job, or None."""
        job = self._state.store.get(job_id)
        return None if job is None else job.record()

    def job_results(self, job_id: str) -> list[dict[str, Any]] | None:
        """The stored (encoded) results of a completed job."""
        job = self._state.store.get(job_id)
        return None if job is None or job.results is None else list(job.results)
