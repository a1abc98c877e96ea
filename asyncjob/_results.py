"""Fetching a job's results: pages (concurrent, or `next` links), order, decode."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from itertools import islice
from operator import itemgetter
from typing import Any, TypeVar

import anyio

from ._context import ClientContext, first_leaf, job_id_of
from ._errors import BadRequestError, JobNotCompleteError, ProtocolError
from ._forksafe import PerLoop
from ._histogram import (
    decode_result,
    load_vector_route,
    may_take_vector_route,
    vector_route_loaded,
)
from ._journal_records import Results
from ._models import ExecutionResult, JobStatus, Response
from ._outcome import failure_reason
from ._sender import job_path
from ._status import StatusFollower
from ._turns import OneStepPerTurn

__all__ = ["ResultsFetcher"]

T = TypeVar("T")


class ResultsFetcher:
    """Brings a COMPLETED job's results back, checked and in submission order."""

    def __init__(self, ctx: ClientContext, status: StatusFollower) -> None:
        self._ctx = ctx
        self._status = status

    async def fetch(
        self, execution_result: ExecutionResult | str, first: dict[str, Any] | None = None
    ) -> ExecutionResult:
        """Every results page, decoded, in submission order; see `get_job_results`.

        `first` is the first page (offset 0) when the client has it already (a
        `jobs/watch/` answer carried it): it is checked as if it had been fetched.
        """
        job_id = job_id_of(execution_result)
        path = job_path(job_id, "resultsV2/")
        with self._ctx.token_scrubbed():
            decoding = anyio.CapacityLimiter(_DECODING_THREADS)
            page, entries = await _decoded_page(
                await self._first_page(job_id, path) if first is None else first,
                job_id,
                decoding,
            )
            labels: set[str] = set()
            _new_labels(job_id, labels, entries.labels)
            expected = self._ctx.labels.get(job_id)
            if expected is None:
                expected = await self._submitted_labels(job_id)
            count = _results_count(page, job_id, expected)
            if count is not None and count > len(entries):
                if not entries:
                    raise ProtocolError(f"job {job_id}: first results page is empty of {count}")
                # Pages come from the client's own URLs: a `next` link is not followed,
                # so it is not checked either. The first page's length is the page size
                # the server really uses.
                step = len(entries)
                entries.extend(
                    await self._fetch_pages(
                        job_id, path, step, len(entries), count, labels, decoding
                    )
                )
            elif page.get("next") is not None:
                await self._follow_pages(job_id, page["next"], entries, expected, labels, decoding)
            if count is not None and len(entries) != count:
                raise ProtocolError(
                    f"job {job_id}: the server counts {count} results but sent {len(entries)}"
                )
            results = await entries.in_order(job_id, expected, _ON_LOOP.get())
        if self._ctx.config.journal_results:
            self._ctx.log(Results(self._ctx.config.base_url, job_id, results))
        run_time = self._ctx.run_times.get(job_id, 0.0)
        handle = execution_result if isinstance(execution_result, ExecutionResult) else None
        return (handle or ExecutionResult(job_id=job_id)).with_results(results, run_time)

    async def _first_page(self, job_id: str, path: str) -> Response:
        """The first results page; a refusal tells why when the job is not COMPLETED."""
        size = self._ctx.config.limits.results_page_size
        try:
            return await self._ctx.sender.request("GET", path, params={"limit": size, "offset": 0})
        except BadRequestError:
            response, status = await self._status.get_status(job_id)
            if status is not JobStatus.COMPLETED:
                reason = failure_reason(response)
                raise JobNotCompleteError(job_id, status.value, reason) from None
            raise

    async def _fetch_pages(
        self,
        job_id: str,
        path: str,
        size: int,
        start: int,
        count: int,
        labels: set[str],
        decoding: anyio.CapacityLimiter,
    ) -> _Decoded:
        """The pages from `start` to `count`, by a few workers (not one task per page).

        A page that brings nothing new (no entry, or a label already seen) is
        refused at once, so a forged `count` cannot keep the client busy.
        """
        offsets = range(start, count, size)
        pages: dict[int, _Decoded] = {}
        todo = iter(offsets)

        def check(offset: int, page_labels: list[str]) -> None:
            if not page_labels:
                raise ProtocolError(
                    f"job {job_id}: results page at offset {offset} is empty of {count}"
                )
            _new_labels(job_id, labels, page_labels)

        async def store(offset: int, response: Response, checked: anyio.Event) -> None:
            def check_page(page_labels: list[str]) -> None:
                check(offset, page_labels)
                checked.set()

            _, entries = await _decoded_page(response, job_id, decoding, check_page)
            pages[offset] = entries

        async def worker(number: int) -> None:
            # A page is decoded while the worker's next request is out; that request
            # goes once the page's labels were checked (so a forged page stops it).
            async with anyio.create_task_group() as tg:
                for offset in todo:  # shared: each offset is taken by one worker
                    response = await self._ctx.sender.request(
                        "GET", path, params={"limit": size, "offset": offset}
                    )
                    checked = anyio.Event()
                    tg.start_soon(store, offset, response, checked)
                    await checked.wait()

        workers = min(self._ctx.config.limits.results_concurrency, len(offsets))
        await _run_bounded(worker, range(workers), workers)
        return _Decoded.joined(map(pages.__getitem__, offsets))

    async def _follow_pages(
        self,
        job_id: str,
        link: object,
        entries: _Decoded,
        expected: tuple[str, ...] | None,
        labels: set[str],
        decoding: anyio.CapacityLimiter,
    ) -> None:
        """Follow `next` links (same origin only) until there is none; no loops, no padding."""
        followed: set[str] = set()
        while link is not None:
            url = str(link)
            if url in followed:
                raise ProtocolError(f"job {job_id}: results pagination loops")
            followed.add(url)
            response = await self._ctx.sender.request(
                "GET", self._ctx.sender.same_origin_path(url)
            )
            page, more = await _decoded_page(response, job_id, decoding)
            link = page.get("next")
            if not more and link is not None:
                raise ProtocolError(f"job {job_id}: empty results page with a next link")
            _new_labels(job_id, labels, more.labels)
            entries.extend(more)
            if expected is not None and len(entries) > len(expected):
                raise ProtocolError(
                    f"job {job_id}: more results than the {len(expected)} circuits submitted"
                )

    async def _submitted_labels(self, job_id: str) -> tuple[str, ...] | None:
        """The labels in submission order, from memory or else from the journal."""
        labels = self._ctx.labels.get(job_id)
        if labels is None:
            base_url = self._ctx.config.base_url
            entry = await self._ctx.from_journal(lambda j: j.find(base_url, job_id))
            if entry is not None:
                labels = entry.labels
        return labels


async def _run_bounded(
    func: Callable[[T], Awaitable[None]], items: Iterable[T], limit: int
) -> None:
    """`func(item)` for every item, at most `limit` at once.

    The first failure cancels the rest and is raised as itself, not wrapped in
    an exception group, so callers see the same exception types as sequentially.
    """
    limiter = anyio.CapacityLimiter(limit)

    async def run(item: T) -> None:
        async with limiter:
            await func(item)

    try:
        async with anyio.create_task_group() as tg:
            for item in items:
                tg.start_soon(run, item)
    except BaseExceptionGroup as group:
        raise first_leaf(group) from None


def _results_count(
    page: dict[str, Any], job_id: str, expected: tuple[str, ...] | None
) -> int | None:
    """The page's `count` when it is an int; it must be the number of circuits submitted."""
    count = page.get("count")
    if not isinstance(count, int) or isinstance(count, bool):
        return None
    if count < 0 or (expected is not None and count != len(expected)):
        shown = "" if expected is None else f" for the {len(expected)} circuits submitted"
        raise ProtocolError(f"job {job_id}: the server counts {count} results{shown}")
    return count


def _new_labels(job_id: str, labels: set[str], page_labels: Iterable[str]) -> None:
    """Add the labels of a page to `labels`; one seen before is refused at once."""
    for label in page_labels:
        if label in labels:
            raise ProtocolError(f"job {job_id}: label {label!r} appears twice in results")
        labels.add(label)


class _Decoded:
    """Labels and decoded results of results pages, in arrival order.

    Two flat lists, not a dict per entry: the `{"label", "results"}` dicts are
    built once, by `in_order`, so a long fetch keeps no garbage-collected
    container per result alive, and the dicts handed over lie together in
    memory. A full collection over 50,000 results dicts made entry by entry,
    among the pages' temporary objects, took 40-50 ms; it stalls the event loop.
    """

    __slots__ = ("labels", "values")

    def __init__(self, labels: list[str], values: list[object]) -> None:
        self.labels = labels
        self.values = values

    @classmethod
    def joined(cls, parts: Iterable[_Decoded]) -> _Decoded:
        """One `_Decoded` of `parts`, in their order."""
        whole = cls([], [])
        for part in parts:
            whole.extend(part)
        return whole

    def __len__(self) -> int:
        return len(self.labels)

    def extend(self, other: _Decoded) -> None:
        """Append `other`'s entries."""
        self.labels += other.labels
        self.values += other.values

    async def in_order(
        self, job_id: str, expected: tuple[str, ...] | None, steps: OneStepPerTurn
    ) -> list[dict[str, Any]]:
        """The results, in submission order; missing or unknown labels are refused.

        The checks are C-level passes; the dicts are built a thousand per step,
        one of `steps` (4,096 at a time took up to 9 ms on a 2-core machine).
        """
        if expected is None or self.labels == list(expected):
            order: Iterable[str] = self.labels if expected is None else expected
            values: Iterable[object] = self.values
        else:
            # Labels are unique (see _new_labels).
            by_label = dict(zip(self.labels, self.values, strict=True))
            if len(by_label) != len(expected) or by_label.keys() != set(expected):
                missing = [label for label in expected if label not in by_label]
                unknown = sorted(set(by_label) - set(expected))
                raise ProtocolError(
                    f"job {job_id}: results do not match the submission "
                    f"(missing {missing[:5]}, unknown {unknown[:5]})"
                )
            order, values = expected, map(by_label.__getitem__, expected)
        pairs = zip(order, values, strict=True)
        results: list[dict[str, Any]] = []
        while batch := list(islice(pairs, _DICTS_PER_STEP)):
            async with steps:
                results += [{"label": label, "results": value} for label, value in batch]
        return results


_ON_LOOP: PerLoop[OneStepPerTurn] = PerLoop(OneStepPerTurn)
"""Steps of result work on an event loop, every fetch of every client: one per turn."""
_DICTS_PER_STEP = 1024
"""Result dicts built in one step (`_ON_LOOP`)."""


_DECODE_IN_THREAD = 256 * 1024
"""Pages with more text than this are parsed and decoded off the event loop."""
_DECODING_THREADS = 2
"""Large pages of one fetch decoded at the same time, in worker threads."""
_ENTRIES_PER_STEP = 16
"""Entries decoded between two yields: to the event loop, or of the GIL in a worker thread."""


async def _decoded_page(
    response: Response | dict[str, Any],
    job_id: str,
    decoding: anyio.CapacityLimiter,
    check: Callable[[list[str]], None] | None = None,
) -> tuple[dict[str, Any], _Decoded]:
    """A results page and its entries, histograms decoded.

    `check(labels)` runs on the event loop once the page is parsed, before
    any histogram is decoded.
    A page is parsed, then decoded a few entries at a time, on the event loop,
    one step of one page per turn of the loop (`_ON_LOOP`): the responses of
    many page workers come in the same turn, and their steps would otherwise
    run in the same next turn, stalling the loop for their sum. A large page
    (whose JSON alone takes milliseconds to parse) goes to a worker thread;
    few threads decode at once (`decoding`), each releasing the GIL every few
    entries: the decoder is pure Python, and a thread that keeps the GIL makes
    the event loop wait a whole switch interval (5 ms) for it.
    """
    if isinstance(response, Response) and len(response.text) > _DECODE_IN_THREAD:

        def decode(raw: list[object]) -> list[object]:
            values: list[object] = []
            for start in range(0, len(raw), _ENTRIES_PER_STEP):
                values += map(decode_result, raw[start : start + _ENTRIES_PER_STEP])
                time.sleep(0)  # releases the GIL
            return values

        data, labels, raw = await anyio.to_thread.run_sync(
            _page_results, response, job_id, abandon_on_cancel=True, limiter=decoding
        )
        if check is not None:
            check(labels)
        values = await anyio.to_thread.run_sync(
            decode, raw, abandon_on_cancel=True, limiter=decoding
        )
        return data, _Decoded(labels, values)
    on_loop = _ON_LOOP.get()
    async with on_loop:  # the page parsed, checked and its first entries decoded
        data, labels, raw = _page_results(response, job_id)
        if check is not None:
            check(labels)
        load = not vector_route_loaded() and any(map(may_take_vector_route, raw))
        decoded = [] if load else list(map(decode_result, raw[:_ENTRIES_PER_STEP]))
    if load:  # numpy's first import (tens of ms), in a thread; never for small histograms
        await anyio.to_thread.run_sync(load_vector_route, limiter=decoding)
    for start in range(len(decoded), len(raw), _ENTRIES_PER_STEP):
        async with on_loop:
            decoded += map(decode_result, raw[start : start + _ENTRIES_PER_STEP])
    return data, _Decoded(labels, decoded)


def _page_results(
    response: Response | dict[str, Any], job_id: str
) -> tuple[dict[str, Any], list[str], list[object]]:
    """A results page's JSON (read, or given parsed) without `results`; their labels and objects.

    The entries' dicts are dropped at once: kept while the page is decoded,
    thousands of them (a dict holding a dict is tracked by the garbage
    collector) would be promoted by the collections that run meanwhile, and
    bring on full collections in the middle of a fetch.
    """
    # A given page (from a watch answer) may serve several handles of one job: copied.
    data = response.json() if isinstance(response, Response) else dict(response)
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        where = (
            f"{response.method} {response.path}"
            if isinstance(response, Response)
            else f"job {job_id}: a jobs/watch/ answer"
        )
        raise ProtocolError(f"{where}: results page has no list")
    entries: list[Any] = data.pop("results")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise ProtocolError(f"job {job_id}: malformed result entry")
    return data, list(map(itemgetter("label"), entries)), [e.get("results") for e in entries]
