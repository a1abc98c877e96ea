"""Fetching a job's results: pages (concurrent, or `next` links), order, decode."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from itertools import chain
from operator import itemgetter
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from ._context import ClientContext, first_leaf, job_id_of
from ._errors import BadRequestError, JobNotCompleteError, ProtocolError
from ._histogram import decode_result
from ._journal_records import Results
from ._models import ExecutionResult, JobStatus, Response
from ._outcome import failure_reason
from ._sender import job_path
from ._status import StatusFollower

__all__ = ["ResultsFetcher"]

T = TypeVar("T")


class ResultsFetcher:
    """Brings a COMPLETED job's results back, checked and in submission order."""

    def __init__(self, ctx: ClientContext, status: StatusFollower) -> None:
        self._ctx = ctx
        self._status = status

    async def fetch(self, execution_result: ExecutionResult | str) -> ExecutionResult:
        """Every results page, decoded, in submission order; see `get_job_results`."""
        job_id = job_id_of(execution_result)
        path = job_path(job_id, "resultsV2/")
        size = self._ctx.config.limits.results_page_size
        with self._ctx.token_scrubbed():
            try:
                first = await self._ctx.sender.request(
                    "GET", path, params={"limit": size, "offset": 0}
                )
            except BadRequestError:
                response, status = await self._status.get_status(job_id)
                if status is not JobStatus.COMPLETED:
                    reason = failure_reason(response)
                    raise JobNotCompleteError(job_id, status.value, reason) from None
                raise
            decoding = anyio.CapacityLimiter(_DECODING_THREADS)
            page, entries = await _decoded_page(first, job_id, decoding)
            labels: set[str] = set()
            _new_labels(job_id, labels, entries)
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
            results = _in_order(job_id, entries, expected)
        if self._ctx.config.journal_results:
            self._ctx.log(Results(self._ctx.config.base_url, job_id, results))
        run_time = self._ctx.run_times.get(job_id, 0.0)
        handle = execution_result if isinstance(execution_result, ExecutionResult) else None
        return (handle or ExecutionResult(job_id=job_id)).with_results(results, run_time)

    async def _fetch_pages(
        self,
        job_id: str,
        path: str,
        size: int,
        start: int,
        count: int,
        labels: set[str],
        decoding: anyio.CapacityLimiter,
    ) -> list[dict[str, Any]]:
        """The pages from `start` to `count`, by a few workers (not one task per page).

        A page that brings nothing new (no entry, or a label already seen) is
        refused at once, so a forged `count` cannot keep the client busy.
        """
        offsets = range(start, count, size)
        pages: dict[int, list[dict[str, Any]]] = {}
        todo = iter(offsets)

        def check(offset: int, entries: list[dict[str, Any]]) -> None:
            if not entries:
                raise ProtocolError(
                    f"job {job_id}: results page at offset {offset} is empty of {count}"
                )
            _new_labels(job_id, labels, entries)

        async def store(offset: int, response: Response, checked: anyio.Event) -> None:
            def check_page(entries: list[dict[str, Any]]) -> None:
                check(offset, entries)
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
        return list(chain.from_iterable(map(pages.__getitem__, offsets)))

    async def _follow_pages(
        self,
        job_id: str,
        link: object,
        entries: list[dict[str, Any]],
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
            _new_labels(job_id, labels, more)
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


def _new_labels(job_id: str, labels: set[str], entries: list[dict[str, Any]]) -> None:
    """Add the labels of a page to `labels`; one seen before is refused at once."""
    for entry in entries:
        label = entry["label"]
        if label in labels:
            raise ProtocolError(f"job {job_id}: label {label!r} appears twice in results")
        labels.add(label)


def _in_order(
    job_id: str, entries: list[dict[str, Any]], expected: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """Results in submission order; missing or unknown labels are refused.

    Every step is a C-level pass (no Python code per entry), so tens of
    thousands of results take a few milliseconds of the event loop.
    """
    if expected is None:
        return entries
    # Labels are unique (see _new_labels).
    by_label = dict(zip(map(itemgetter("label"), entries), entries, strict=True))
    if len(by_label) != len(expected) or by_label.keys() != set(expected):
        missing = [label for label in expected if label not in by_label]
        unknown = sorted(set(by_label) - set(expected))
        raise ProtocolError(
            f"job {job_id}: results do not match the submission "
            f"(missing {missing[:5]}, unknown {unknown[:5]})"
        )
    return list(map(by_label.__getitem__, expected))


_DECODE_IN_THREAD = 256 * 1024
"""Pages with more text than this are parsed and decoded off the event loop."""
_DECODING_THREADS = 2
"""Large pages of one fetch decoded at the same time, in worker threads."""
_ENTRIES_PER_STEP = 16
"""Entries decoded between two yields: to the event loop, or of the GIL in a worker thread."""


async def _decoded_page(
    response: Response,
    job_id: str,
    decoding: anyio.CapacityLimiter,
    check: Callable[[list[dict[str, Any]]], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A results page and its entries, histograms decoded.

    `check(entries)` runs on the event loop once the page is parsed, before
    any histogram is decoded (the entries' labels are checked by then).
    A page is decoded a few entries at a time, on the event loop between two
    yields to it: many page workers decoding in the same turn of the loop would
    stall it for their sum. A large page (whose JSON alone takes milliseconds
    to parse) goes to a worker thread; few threads decode at once (`decoding`),
    each releasing the GIL every few entries: the decoder is pure Python, and
    a thread that keeps the GIL makes the event loop wait a whole switch
    interval (5 ms) for it.
    """
    if len(response.text) > _DECODE_IN_THREAD:

        def decode(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
            entries: list[dict[str, Any]] = []
            for start in range(0, len(results), _ENTRIES_PER_STEP):
                entries += _decoded(results[start : start + _ENTRIES_PER_STEP])
                time.sleep(0)  # releases the GIL
            return entries

        data, results = await anyio.to_thread.run_sync(
            _page_results, response, job_id, abandon_on_cancel=True, limiter=decoding
        )
        if check is not None:
            check(results)
        entries = await anyio.to_thread.run_sync(
            decode, results, abandon_on_cancel=True, limiter=decoding
        )
        return data, entries
    data, results = _page_results(response, job_id)
    if check is not None:
        check(results)
    entries = _decoded(results[:_ENTRIES_PER_STEP])
    for start in range(_ENTRIES_PER_STEP, len(results), _ENTRIES_PER_STEP):
        await anyio.lowlevel.checkpoint()
        entries += _decoded(results[start : start + _ENTRIES_PER_STEP])
    return data, entries


def _page_results(response: Response, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A results page's JSON and its `results` list, each entry a dict with a str label."""
    data = response.json()
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ProtocolError(f"{response.method} {response.path}: results page has no list")
    results: list[dict[str, Any]] = data["results"]
    for entry in results:
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise ProtocolError(f"job {job_id}: malformed result entry")
    return data, results


def _decoded(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of a results page, their histograms decoded."""
    return [
        {"label": entry["label"], "results": decode_result(entry.get("results"))}
        for entry in results
    ]
