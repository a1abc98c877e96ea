"""Unpacking and checking the circuits of a chunk: the scheduler's main CPU cost.

Each circuit of an `add_circuits/` chunk is unpacked (base64, gzip, UTF-8) and
validated, about 75 us a circuit. `Decoder` does it in a worker thread, or,
with ``workers > 0``, in a pool of worker processes, so that chunks uploaded at
once are decoded in parallel, as on a multi-core service. The workers are
started (and warmed up) with the scheduler, never on a request's time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import multiprocessing
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import anyio

from .._errors import QasmValidationError
from .._qasm import check_circuit

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "BadRequest",
    "Decoder",
    "check_sources",
    "decode",
    "gunzip",
    "unpack",
]

logger = logging.getLogger("asyncjob.local")

MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
"""Cap on one decompressed circuit or observable string (a gzip bomb is a 400)."""

_WARM_UP = (
    'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\nh q[0];\nrx(0.5) q[1];\ncx q[0],q[1];\n'
)
_START_TIMEOUT = 60.0
"""Seconds the workers may take to start and warm up."""


class BadRequest(Exception):
    """A request the protocol does not allow: answered 400 with `detail`."""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


def gunzip(data: bytes) -> bytes:
    """Decompress one gzip stream, refusing more than `MAX_DECOMPRESSED_BYTES`."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(data, MAX_DECOMPRESSED_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError(f"decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes")
    if not inflater.eof:
        raise ValueError("truncated gzip stream")
    return out


def unpack(value: object, what: str) -> str:
    """Decode base64(gzip(utf-8 text)), the wire form of circuits and templates."""
    if not isinstance(value, str):
        raise BadRequest(f"{what}: expected a base64 string, got {type(value).__name__}")
    try:
        return gunzip(base64.b64decode(value, validate=True)).decode("utf-8")
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise BadRequest(f"{what}: not base64(gzip(utf-8 OpenQASM)): {exc}") from None


def check_sources(circuits: dict[str, str]) -> None:
    """BadRequest naming the first invalid circuit (with its line and column)."""
    try:
        for label, source in circuits.items():
            check_circuit(label, source)
    except QasmValidationError as exc:
        raise BadRequest(
            str(exc), label=exc.label, line=exc.line, column=exc.column, reason=exc.reason
        ) from None


def decode(packed: dict[str, object]) -> dict[str, str]:
    """label -> QASM source of a chunk's `circuits` map, every circuit checked."""
    circuits = {label: unpack(value, f"circuit {label!r}") for label, value in packed.items()}
    check_sources(circuits)
    return circuits


def _decode_in_worker(packed: dict[str, object]) -> tuple[dict[str, str] | None, str, Any]:
    """`decode` in a worker process: the outcome as plain values, which always pickle."""
    try:
        return decode(packed), "", None
    except BadRequest as exc:
        return None, exc.detail, exc.extra


_barrier: Any = None  # in a worker: the start barrier it was given


def _init_worker(barrier: Any) -> None:
    global _barrier
    _barrier = barrier


def _warm_up() -> int:
    """Warm a worker up, then wait for the others: N such calls take N distinct workers."""
    check_circuit("warm-up", _WARM_UP)
    _barrier.wait(_START_TIMEOUT)
    return os.getpid()


class Decoder:
    """Runs `decode` in a thread, or in `workers` worker processes when workers > 0.

    If the worker processes die, it logs a warning and decodes in threads from then on.
    """

    def __init__(self, workers: int = 0) -> None:
        if workers < 0:
            raise ValueError(f"decode_workers must be >= 0, got {workers!r}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self.pids: tuple[int, ...] = ()
        """Process ids of the workers (empty when decoding in threads)."""

    async def start(self) -> None:
        """Start the worker processes and wait until every one has checked a circuit."""
        if self.workers == 0 or self._pool is not None:
            return
        context = multiprocessing.get_context("spawn")
        # A barrier passes to workers only as they start (initargs), not in a task.
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(context.Barrier(self.workers),),
        )
        try:
            loop = asyncio.get_running_loop()
            ready = [loop.run_in_executor(pool, _warm_up) for _ in range(self.workers)]
            self.pids = tuple(sorted(await asyncio.gather(*ready)))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        self._pool = pool

    async def stop(self) -> None:
        """Stop the worker processes (a chunk being decoded is abandoned)."""
        pool, self._pool, self.pids = self._pool, None, ()
        if pool is not None:
            await anyio.to_thread.run_sync(lambda: pool.shutdown(wait=True, cancel_futures=True))

    async def decode(self, packed: dict[str, object]) -> dict[str, str]:
        """The chunk's circuits, decoded and checked; BadRequest for the first bad one."""
        pool = self._pool
        if pool is not None:
            try:
                circuits, detail, extra = await asyncio.get_running_loop().run_in_executor(
                    pool, _decode_in_worker, packed
                )
            except BrokenProcessPool:
                logger.warning("decode workers died; decoding chunks in threads from now on")
                if self._pool is pool:
                    self._pool, self.pids = None, ()
                    pool.shutdown(wait=False, cancel_futures=True)
            else:
                if circuits is None:
                    raise BadRequest(detail, **extra)
                return circuits
        return await anyio.to_thread.run_sync(decode, packed)
