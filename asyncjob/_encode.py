"""Validation and compression of a plain batch, overlapped on two threads.

Compression does not depend on validation, so it starts at once and runs in a
worker thread while another validates (zlib releases the GIL while it works).
Nothing it produces is sent before validation is complete: the submitter only
takes compressed slices once every circuit has passed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from . import _qasm
from ._batch import Submission, encode_circuit

__all__ = ["ENCODE_SLICE", "THREAD_THRESHOLD", "compress_slices", "encode_all", "validate_plain"]

THREAD_THRESHOLD = 16
"""Batches larger than this are validated and encoded off the event loop."""
ENCODE_SLICE = 256
"""Circuits compressed at a time (each slice is handed over as soon as it is done)."""
_VALIDATE_SLICE = 8
"""Circuits validated between two releases of the GIL (see `validate_plain`)."""


def encode_all(sources: Sequence[str]) -> list[str]:
    """The wire form of each source, in order."""
    return [encode_circuit(source) for source in sources]


def validate_plain(submission: Submission, *, full: bool, max_bytes: int) -> None:
    """Check every circuit of a plain batch, and that each fits in a request.

    The validator is pure Python: without a pause it keeps the GIL for a whole
    switch interval (5 ms) each time the compressing thread or the event loop
    wants it back. Releasing it every few circuits lets them run in between.
    """
    items = list(zip(submission.labels, submission.sources, strict=True))
    if len(items) <= THREAD_THRESHOLD:
        _qasm.check_batch(items, full=full)
    else:
        for start in range(0, len(items), _VALIDATE_SLICE):
            _qasm.check_batch(items[start : start + _VALIDATE_SLICE], full=full)
            time.sleep(0)  # releases the GIL
    submission.check_sizes(max_bytes)


async def compress_slices(sources: Sequence[str], send: MemoryObjectSendStream[list[str]]) -> None:
    """Compress `sources` slice by slice in a worker thread, sending each slice when done."""
    async with send:
        for start in range(0, len(sources), ENCODE_SLICE):
            more = sources[start : start + ENCODE_SLICE]
            encoded = await anyio.to_thread.run_sync(encode_all, more, abandon_on_cancel=True)
            try:
                await send.send(encoded)
            except anyio.BrokenResourceError:
                return  # the submission stopped taking them
