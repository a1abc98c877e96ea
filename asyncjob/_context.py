"""What the parts of a client share: configuration, sender, journal recorder, memory."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio

from ._cleanup import Cleanups
from ._config import ClientConfig
from ._errors import InvalidInputError, ProtocolError
from ._journal import Journal
from ._journal_records import Record
from ._journal_writer import JournalWriter
from ._models import ExecutionResult, JobStatus, Response
from ._secrets import scrub
from ._sender import Sender, job_path

__all__ = ["ClientContext", "data_field", "first_leaf", "job_id_of", "remember"]

logger = logging.getLogger("asyncjob")
T = TypeVar("T")

KNOWN_LABELS = 16384
"""Jobs whose labels (and last seen status) are kept in memory; the journal keeps the rest."""


class ClientContext:
    """The state one client's submitter, status follower and results fetcher share.

    Configuration, the sender every request goes through, the journal recorder,
    the background cleanups, and what the client remembers of its jobs: their
    labels, last seen status and reported run time.
    """

    def __init__(self, config: ClientConfig, sender: Sender) -> None:
        self.config = config
        self.sender = sender
        self.writer = None if config.journal is None else JournalWriter(config.journal)
        self.cleanups = Cleanups(journaled=self.writer is not None)
        self.labels: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self.seen: OrderedDict[str, JobStatus] = OrderedDict()
        self.run_times: OrderedDict[str, float] = OrderedDict()

    def log(self, record: Record) -> int:
        """Queue a journal record (never blocks); its ticket for `durable`, 0 if none."""
        return 0 if self.writer is None else self.writer.record(record)

    async def durable(self, ticket: int) -> None:
        """Wait until a record is in the journal (not if the journal is degraded); see writer."""
        if ticket and self.writer is not None:
            await self.writer.durable(ticket)

    async def from_journal(self, func: Callable[[Journal], T]) -> T | None:
        """`func(journal)` off the loop (abandoned on cancellation); None without a journal."""
        writer = self.writer
        if writer is None:
            return None

        def read() -> T | None:
            journal = writer.journal()
            return None if journal is None else func(journal)

        try:
            return await anyio.to_thread.run_sync(read, abandon_on_cancel=True)
        except (OSError, sqlite3.Error) as exc:
            logger.warning("journal %s could not be read: %s", writer.path, exc)
            return None

    def remember_labels(self, job_id: str, labels: tuple[str, ...]) -> None:
        remember(self.labels, job_id, labels)

    @contextlib.contextmanager
    def token_scrubbed(self) -> Iterator[None]:
        """A `ProtocolError` quoting what the server sent never quotes the token.

        A server (or proxy) may echo the Authorization header back in any field.
        The message is scrubbed in place: a new error would chain the old one.
        """
        try:
            yield
        except ProtocolError as exc:
            exc.args = tuple(
                scrub(arg, self.config.token) if isinstance(arg, str) else arg for arg in exc.args
            )
            raise

    async def cancel(self, job_id: str) -> Response:
        """Ask the scheduler to cancel the job; a job already terminal (409) is not an error."""
        return await self.sender.request("POST", job_path(job_id, "cancel/"), ok=(409,))


def job_id_of(execution_result: ExecutionResult | str) -> str:
    """The job id of a handle; a handle without one is a `ValueError`."""
    job_id = (
        execution_result
        if isinstance(execution_result, str)
        else getattr(execution_result, "job_id", None)
    )
    if not job_id:
        raise InvalidInputError(
            "this ExecutionResult carries no job_id: it is not a remote job handle"
        )
    job_path(job_id)
    return job_id


def remember(memory: OrderedDict[str, T], key: str, value: T) -> None:
    """Store `value`, forgetting the oldest entries beyond `KNOWN_LABELS`."""
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > KNOWN_LABELS:
        memory.popitem(last=False)


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def data_field(data: object, name: str, kind: type, where: str) -> Any:
    """`data[name]` when it is a (non-empty) `kind`; `where` names the answer in errors."""
    value = data.get(name) if isinstance(data, dict) else None
    if not isinstance(value, kind) or (isinstance(value, str) and not value):
        raise ProtocolError(f"{where}: response has no valid {name!r} field")
    return value
