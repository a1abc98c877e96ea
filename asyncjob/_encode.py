"""Validation and compression of a plain batch, interleaved in worker threads.

The validator is pure Python and holds the GIL; the compressor (`_gzip`)
releases it while it compresses. A thread that only validated would keep the
GIL for a whole switch interval (5 ms) each time the event loop or a
compressing thread wants it back. So each worker alternates: it compresses a
circuit (the GIL is free meanwhile) then validates the next ones, and hands the
GIL over at every circuit without ever waiting for it to be taken. Validation
runs ahead of compression (`CHECKS_PER_CIRCUIT` circuits checked per circuit
compressed): nothing can be sent before the last circuit has passed, so it is
the submission's critical path, and the rest of the compression runs while the
first chunks are uploaded. The submitter takes compressed slices only once
every circuit has passed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from . import _qasm
from ._batch import encode_circuit
from ._gzip import COMPRESSOR

__all__ = ["CHECKS_PER_CIRCUIT", "ENCODE_SLICE", "THREAD_THRESHOLD", "PlainBatch", "encode_all"]

THREAD_THRESHOLD = 16
"""Batches larger than this are validated and encoded off the event loop."""
ENCODE_SLICE = 64
"""Circuits a worker compresses in one go (each slice is handed over as soon as it is done)."""
CHECKS_PER_CIRCUIT = 4 if COMPRESSOR == "isal" else 2
"""Circuits a worker validates per circuit it compresses, until all are validated.

ISA-L compresses a circuit in about half the time it takes to validate it, zlib
in about twice: with it, the batch is validated when about a quarter of it is
compressed (50,000 circuits: validated after 1.9-2.1 s here, 2.5-2.9 s at 2).
"""
MAX_WORKERS = 1 if COMPRESSOR == "isal" else 3
"""Worker threads at most (one per core).

One with ISA-L: validation holds the GIL most of the time, so a second worker
mostly waits for it, and every thread waiting for the GIL delays the event loop's
turn (50,000 circuits: loop stalls of 18-22 ms with two or three, 12-14 ms with
one, in about the same time). With zlib, compression is most of the work and runs without the
GIL: one worker per core.
"""


def encode_all(sources: Sequence[str]) -> list[str]:
    """The wire form of each source, in order."""
    return [encode_circuit(source) for source in sources]


def worker_count(n: int) -> int:
    """Worker threads for a batch of `n` circuits: one per core, `MAX_WORKERS` at most."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS, -(-n // ENCODE_SLICE)))


class PlainBatch:
    """The validation and compression of one plain batch, shared by its worker threads.

    Each call of `work` (in a worker thread) takes the next slice to compress
    and the next circuits to validate, does both interleaved circuit by
    circuit, and returns the compressed slice. After an invalid circuit, work
    continues only on validation that may find an earlier one, so the error
    raised is always the first in batch order.
    """

    def __init__(self, labels: Sequence[str], sources: Sequence[str], *, full: bool) -> None:
        self._labels = labels
        self._sources = sources
        self._full = full
        self._lock = threading.Lock()
        self._next_pack = 0
        self._next_check = 0
        self._checked = 0
        self._error: tuple[int, Exception] | None = None
        self._stopped = False

    @property
    def validated(self) -> bool:
        """Every circuit has passed."""
        return self._checked == len(self._sources)

    def stop(self) -> None:
        """Abandon the work: each worker returns after the circuit in hand."""
        self._stopped = True

    def raise_error(self) -> None:
        """Raise the error of the first invalid circuit, if any was found."""
        if self._error is not None:
            raise self._error[1]

    def work(self) -> tuple[int, list[str]] | None:
        """Compress the next slice while validating further on; None when nothing is left.

        Returns the slice's first position and its compressed circuits.
        """
        n = len(self._sources)
        with self._lock:
            # Circuits are claimed in order and validation runs ahead: after an
            # invalid one, every earlier circuit is already in some worker's hands.
            if self._stopped or self._error is not None or self._next_pack >= n:
                return None
            pack = range(self._next_pack, min(self._next_pack + ENCODE_SLICE, n))
            checks = range(
                self._next_check, min(self._next_check + CHECKS_PER_CIRCUIT * len(pack), n)
            )
            self._next_pack, self._next_check = pack.stop, checks.stop
        encoded: list[str] = []
        check = iter(checks)
        done = 0
        try:
            for i in pack:
                if self._error is not None or self._stopped:
                    break
                try:
                    encoded.append(encode_circuit(self._sources[i]))  # the GIL is free meanwhile
                except ValueError:  # not encodable (a lone surrogate): its check names it
                    if self._check(i):
                        raise
                    return None
                for _ in range(CHECKS_PER_CIRCUIT):
                    j = next(check, None)
                    if j is None:
                        break
                    if not self._check(j):
                        return None
                    done += 1
            for j in check:
                if not self._check(j):
                    return None
                done += 1
        finally:
            with self._lock:
                self._checked += done
        if len(encoded) < len(pack):
            return None
        return pack.start, encoded

    def _check(self, index: int) -> bool:
        """Validate circuit `index`; False (the error kept) if it is invalid or work stopped."""
        error = self._error
        if self._stopped or (error is not None and error[0] < index):
            return False
        try:
            _qasm.check_circuit(self._labels[index], self._sources[index], full=self._full)
        except Exception as exc:
            with self._lock:
                if self._error is None or index < self._error[0]:
                    self._error = (index, exc)
            return False
        return True

    async def run(self, send: MemoryObjectSendStream[list[str]], validated: anyio.Event) -> None:
        """Work in worker threads; send the compressed slices in order.

        `validated` is set once every circuit has passed, or once the work has
        ended without that (an invalid circuit, a failure, a cancellation).
        """
        ready: dict[int, list[str]] = {}
        sent = 0

        async def worker() -> None:
            nonlocal sent
            while True:
                done = await anyio.to_thread.run_sync(self.work, abandon_on_cancel=True)
                if self.validated:
                    validated.set()
                if done is None:
                    return
                ready[done[0]] = done[1]
                while sent in ready:
                    more = ready.pop(sent)
                    sent += len(more)
                    try:
                        send.send_nowait(more)
                    except anyio.BrokenResourceError:
                        self.stop()  # the submission stopped taking them
                        return

        try:
            async with send, anyio.create_task_group() as tg:
                for _ in range(worker_count(len(self._sources))):
                    tg.start_soon(worker)
        finally:
            self.stop()
            validated.set()
