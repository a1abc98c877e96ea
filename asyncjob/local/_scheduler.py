"""`LocalScheduler`: a job scheduler on 127.0.0.1 speaking the wire protocol (docs/protocol.md).

It owns the scheduler's state (`SchedulerState`: jobs, counters, faults,
decoder) across stops and restarts, and serves it with an aiohttp server whose
routes (`_routes`) and request pipeline (`_middleware`) are built anew at each
start. `run_in_thread()` runs it on a background thread (`_threaded`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Callable

from aiohttp import web
from aiohttp.log import access_logger

from .._wire import is_loopback
from ._choice import choose_executor
from ._executors import Executor
from ._faults import FaultConfig
from ._jobs import TERMINAL, JobRecord
from ._routes import build_app
from ._state import SchedulerState, SchedulerView
from ._threaded import ThreadedScheduler

__all__ = ["LocalScheduler"]

logger = logging.getLogger("asyncjob.local")


class LocalScheduler(SchedulerView):
    """A job scheduler on 127.0.0.1 that speaks the cloud service's wire protocol.

    Use it ``async with LocalScheduler(token="t") as s:`` (then ``s.base_url``
    and ``s.token``), or ``with LocalScheduler(...).run_in_thread() as s:`` from
    blocking code. ``stop()`` then ``start()`` restarts it on the same port with
    its jobs intact; ``faults`` can be replaced at any time. ``watch=False``
    serves without the `jobs/watch/` extension (404), and ``first_chunk=False``
    without the `first_chunk` one of `job/init/` (the field is ignored), like
    a plain server.
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
        first_chunk: bool = True,
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
        self.shutdown_timeout = shutdown_timeout
        self.watch = watch
        self.first_chunk = first_chunk
        self.log_requests = log_requests
        self._duration = self._check_duration(job_duration)
        self._rng = random.Random(seed)
        self._state = SchedulerState(
            token=token or secrets.token_urlsafe(24),
            host=host,
            port=port,
            executor=choose_executor(executor),
            max_concurrent_jobs=max_concurrent_jobs,
            job_duration=self._draw_duration,
            faults=faults or FaultConfig(),
            decode_workers=decode_workers,
        )
        self._runner: web.AppRunner | None = None

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
        state = self._state
        state.closing = asyncio.Event()
        await state.decoder.start()
        runner = web.AppRunner(
            build_app(state, watch=self.watch, first_chunk=self.first_chunk),
            access_log=access_logger if self.log_requests else None,
            shutdown_timeout=self.shutdown_timeout,
        )
        try:
            await runner.setup()
            site = web.TCPSite(runner, state.host, state.port, reuse_address=True)
            await site.start()
        except BaseException:
            try:
                await runner.cleanup()
            finally:
                await state.decoder.stop()
            raise
        state.port = int(runner.addresses[0][1])
        self._runner = runner
        state.store.start()
        logger.info("local scheduler serving at %s", self.base_url)

    async def stop(self) -> None:
        """Stop serving; hung requests are dropped and running jobs paused until `start()`."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        state = self._state
        if state.closing is not None:
            state.closing.set()
        try:
            await state.store.stop()
            await runner.cleanup()
        finally:
            await state.decoder.stop()

    async def __aenter__(self) -> LocalScheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def run_in_thread(self) -> ThreadedScheduler:
        """This scheduler, to be run on its own event loop thread (a context manager)."""
        return ThreadedScheduler(self)

    # -- what tests and operators look at --------------------------------------

    @property
    def running(self) -> bool:
        """True while serving."""
        return self._runner is not None

    @property
    def host(self) -> str:
        """The address served on."""
        return self._state.host

    @property
    def decode_worker_pids(self) -> tuple[int, ...]:
        """Process ids of the decode workers (empty when chunks are decoded in a thread)."""
        return self._state.decoder.pids

    @property
    def executor(self) -> Executor:
        """What runs the circuits."""
        return self._state.store.executor

    async def wait_for_status(self, job_id: str, *statuses: str) -> JobRecord:
        """Wait until the job is in one of `statuses` (default: any terminal one).

        Bound the wait with ``anyio.fail_after`` / ``asyncio.timeout``.
        """
        wanted = set(statuses) or set(TERMINAL)

        def reached() -> bool:
            job = self._state.store.get(job_id)
            if job is None:
                raise KeyError(f"no job {job_id!r}")
            return job.status in wanted

        await self._state.store.wait_for(reached)
        record = self.job(job_id)
        assert record is not None
        return record

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds.

        It is re-checked whenever a job changes state and whenever a request
        arrives (so predicates on `stats` and `fault_log` work too).
        """
        await self._state.store.wait_for(predicate)
