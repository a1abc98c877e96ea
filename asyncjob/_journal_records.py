"""Typed journal records: what the client tells the journal, one value per event.

The client only builds these (cheap, on the event loop); the journal's writer
turns them into SQL in its own thread, many records per transaction.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs

__all__ = [
    "Abandoned",
    "Begin",
    "Cancelling",
    "Chunk",
    "ChunkSent",
    "Created",
    "Record",
    "Results",
    "Status",
    "Submitted",
]


@attrs.frozen
class Chunk:
    """Chunk `index` with its idempotency key and body, before it is sent."""

    key: str
    index: int
    chunk_key: str
    body: dict[str, Any] | str
    """The body as sent, or its JSON text when it was serialised already."""
    last: bool
    """The last chunk of the submission: recording it makes the submission complete."""


@attrs.frozen
class Begin:
    """A submission, before its `job/init/` is sent: labels in order and options."""

    key: str
    base_url: str
    labels: tuple[str, ...]
    options: dict[str, Any]
    only: Chunk | None = None
    """The submission's only chunk, recorded with it (the submission is then complete)."""


@attrs.frozen
class Created:
    """The server answered `job/init/` with `job_id`."""

    key: str
    job_id: str


@attrs.frozen
class ChunkSent:
    """The server acknowledged chunk `index`."""

    key: str
    index: int


@attrs.frozen
class Submitted:
    """Every chunk landed: the chunk bodies can go."""

    key: str
    job_id: str | None = None
    """The job's id when no `Created` came before (one chunk, landed with `job/init/`)."""


@attrs.frozen
class Cancelling:
    """The submission was cancelled; its job (if one was created) is being cancelled.

    Until `Abandoned` follows, `resume` finds the job (by the init key if its id
    is unknown) and cancels it.
    """

    key: str


@attrs.frozen
class Abandoned:
    """The submission failed or was cancelled, and its job (if any) was cancelled."""

    key: str


@attrs.frozen
class Status:
    """A status seen by polling (the history keeps each change once)."""

    base_url: str
    job_id: str
    status: str


@attrs.frozen
class Results:
    """Fetched results, to be kept unless they are too large."""

    base_url: str
    job_id: str
    results: list[dict[str, Any]]


Record: TypeAlias = (
    Begin | Chunk | Created | ChunkSent | Submitted | Cancelling | Abandoned | Status | Results
)

ESSENTIAL = (Begin, Chunk, Created, ChunkSent, Submitted, Cancelling, Abandoned)
"""Records `resume` depends on; the others (status history, results) may be dropped."""
