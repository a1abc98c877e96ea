"""Property-based tests: the results path and the batch/option rules against oracles.

- Histograms (random widths up to QH2, random counts) served in shuffled, paged
  results come back from `get_job_results` intact and in submission order;
  arbitrary `results` objects and mutated encodings come back decoded, passed
  through, or as a `ProtocolError`, never as any other exception.
- `build_submission` accepts exactly the `shot_groups`, `ham_ops` and
  `circuit_ham_map` an independent oracle accepts; once chunked, every chunk's
  local `shot_groups` passes the local scheduler's own check and adds up to the
  batch-wide allocation, and compressed `ham_ops` decode back (server side) to
  the dense terms.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from yarl import URL

from asyncjob import AsyncJobClient, ProtocolError
from asyncjob._batch import build_submission, encode_circuit
from asyncjob._config import ClientConfig
from asyncjob._histogram import encode_histogram
from asyncjob.local._chunks import decode_observables
from asyncjob.local._chunks import shots_per_circuit as server_check_shot_groups
from asyncjob.local._decode import BadRequest

from ..conftest import BELL, CallbackResult, aioresponses, fast_retry
from .conftest import TOKEN, run_async

BASE = "http://127.0.0.1:8999/api/"
CONFIG = ClientConfig.build(BASE, TOKEN, 1000)
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(max_examples=300, deadline=None)

# -- strategies ------------------------------------------------------------------------------


@st.composite
def histograms(draw: st.DrawFn) -> tuple[int, dict[str, int]]:
    n_bits = draw(st.one_of(st.integers(1, 16), st.integers(17, 300)))
    indices = draw(st.sets(st.integers(0, 2**n_bits - 1), max_size=12))
    counts = draw(st.lists(st.integers(1, 10**6), min_size=len(indices), max_size=len(indices)))
    return n_bits, {
        format(i, f"0{n_bits}b"): c for i, c in zip(sorted(indices), counts, strict=True)
    }


labels = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


# -- the client's results path, mocked -------------------------------------------------------


async def fetch_through_client(
    circuits: dict[str, str], served: list[dict[str, Any]], page_size: int, with_count: bool
) -> Any:
    """Submit `circuits` (mocked), then serve `served` in pages and fetch them."""

    def results_page(url: URL, **kwargs: Any) -> CallbackResult:
        query = dict(url.query)
        query.update({k: str(v) for k, v in (kwargs.get("params") or {}).items()})
        offset = int(query.get("offset", "0"))
        limit = int(query.get("limit", "100"))
        chunk = served[offset : offset + limit]
        more = offset + limit < len(served)
        link = f"{BASE}job/j1/resultsV2/?limit={limit}&offset={offset + limit}" if more else None
        body: dict[str, Any] = {"next": link, "previous": None, "results": chunk}
        if with_count:
            body["count"] = len(served)
        return CallbackResult(payload=body)

    async with AsyncJobClient(
        BASE, TOKEN, retry=fast_retry(), journal=False, limits=_limits(page_size)
    ) as client:
        with aioresponses() as m:
            m.post(f"{BASE}job/init/", payload={"job_id": "j1"})
            m.post(f"{BASE}job/j1/add_circuits/", payload={}, repeat=True)
            m.get(re.compile(r".*/job/j1/resultsV2/.*"), callback=results_page, repeat=True)
            handle = await client.submit_circuits(circuits)
            return await client.get_job_results(handle)


def _limits(page_size: int) -> Any:
    from asyncjob import Limits

    return Limits(results_page_size=page_size)


@SLOW
@given(
    st.lists(st.tuples(labels, histograms()), min_size=1, max_size=10, unique_by=lambda t: t[0]),
    st.integers(1, 4),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_random_histograms_come_back_intact_and_in_order(
    jobs: list[tuple[str, tuple[int, dict[str, int]]]],
    page_size: int,
    with_count: bool,
    rng: random.Random,
) -> None:
    circuits = {label: BELL for label, _ in jobs}
    served = [{"label": label, "results": encode_histogram(h, n)} for label, (n, h) in jobs]
    rng.shuffle(served)  # the server's order is not the submission order
    result = run_async(fetch_through_client, circuits, served, page_size, with_count)
    assert result.results == [{"label": label, "results": h} for label, (_, h) in jobs]


# No NaN: it is not JSON, and nan != nan would fail the pass-through check spuriously.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
result_objects = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "payload": st.one_of(
                json_values, st.text(max_size=40), st.just("UUgxAgLoBwIAAwMBAAIC+QPrAw==")
            )
        },
        optional={
            "encoding": st.one_of(json_values, st.sampled_from(["qh1", "qh2", "QH1", ""])),
            "n_bits": st.one_of(json_values, st.integers(-3, 300), st.just(2**30)),
        },
    ),
)


@SLOW
@given(st.lists(result_objects, min_size=1, max_size=5))
def test_any_results_object_is_decoded_passed_through_or_refused(objects: list[Any]) -> None:
    circuits = {f"c{i}": BELL for i in range(len(objects))}
    served = [{"label": f"c{i}", "results": obj} for i, obj in enumerate(objects)]
    try:
        result = run_async(fetch_through_client, circuits, served, 2, True)
    except ProtocolError:
        event("refused")
        return
    event("decoded or passed through")
    for obj, got in zip(objects, result.results or [], strict=True):
        if isinstance(obj, dict) and obj.get("payload"):
            assert isinstance(got["results"], dict)  # decoded: a histogram
            assert all(isinstance(v, int) and v > 0 for v in got["results"].values())
        else:
            assert got["results"] == obj  # passed through unchanged


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "delete", "insert", "truncate"]), st.integers(0, 10**6)),
    min_size=1,
    max_size=3,
)


def mutate(blob: bytes, edits: list[tuple[str, int]], byte: int) -> bytes:
    data = bytearray(blob)
    for kind, where in edits:
        at = where % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data[at] ^= byte or 1
        elif kind == "delete" and at < len(data):
            del data[at]
        elif kind == "insert":
            data.insert(at, byte)
        elif kind == "truncate":
            del data[at:]
    return bytes(data)


@SLOW
@given(histograms(), mutations, st.integers(0, 255))
def test_mutated_encodings_through_the_client_decode_validly_or_are_refused(
    case: tuple[int, dict[str, int]], edits: list[tuple[str, int]], byte: int
) -> None:
    n_bits, histogram = case
    encoded = encode_histogram(histogram, n_bits)
    blob = mutate(base64.b64decode(str(encoded["payload"])), edits, byte)
    assume(blob != base64.b64decode(str(encoded["payload"])))
    obj = {**encoded, "payload": base64.b64encode(blob).decode()}
    try:
        result = run_async(
            fetch_through_client, {"m": BELL}, [{"label": "m", "results": obj}], 1, True
        )
    except ProtocolError:
        event("refused")
        return
    event("still a valid histogram")
    ((got,),) = [[r["results"] for r in result.results or []]]
    if not blob:  # an empty payload is passed through unchanged (docs/protocol.md)
        assert got == obj
        return
    # Whatever decoded is a well-formed histogram of the declared width.
    assert all(len(key) == n_bits and not key.strip("01") for key in got)
    assert all(isinstance(v, int) and v > 0 for v in got.values())


# -- build_submission: shot_groups against an oracle -----------------------------------------


def oracle_shot_groups(rows: object, n: int) -> bool:
    """The documented rule: [start, end, shots] int triples tiling [0, n) in order, shots > 0."""
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence) or not rows:
        return False
    expected = 0
    for row in rows:
        if isinstance(row, str | bytes) or not isinstance(row, Sequence) or len(row) != 3:
            return False
        if not all(type(x) is int for x in row):
            return False
        start, end, shots = row
        if start != expected or end <= start or end > n or shots <= 0:
            return False
        expected = end
    return expected == n


@st.composite
def tilings(draw: st.DrawFn) -> tuple[int, list[list[Any]]]:
    """A valid tiling of [0, n), or one broken in one of many ways."""
    n = draw(st.integers(1, 40))
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=min(6, n - 1)))) if n > 1 else []
    bounds = [0, *cuts, n]
    rows: list[list[Any]] = [
        [a, b, draw(st.integers(1, 10**6))] for a, b in itertools.pairwise(bounds)
    ]
    breakage = draw(
        st.sampled_from(
            [
                "none",
                "none",
                "shift",
                "drop",
                "duplicate",
                "swap",
                "shots",
                "arity",
                "type",
                "extend",
            ]
        )
    )
    k = draw(st.integers(0, len(rows) - 1))
    if breakage == "shift":
        rows[k][draw(st.integers(0, 1))] += draw(st.sampled_from([-2, -1, 1, 2]))
    elif breakage == "drop":
        del rows[k]
    elif breakage == "duplicate":
        rows.insert(k, list(rows[k]))
    elif breakage == "swap" and len(rows) > 1:
        rows[0], rows[-1] = rows[-1], rows[0]
    elif breakage == "shots":
        rows[k][2] = draw(st.sampled_from([0, -1, -(10**6)]))
    elif breakage == "arity":
        rows[k] = rows[k][: draw(st.sampled_from([0, 1, 2]))] or rows[k] + [1]
    elif breakage == "type":
        rows[k][draw(st.integers(0, 2))] = draw(st.sampled_from([True, 1.0, "1", None]))
    elif breakage == "extend":
        rows[-1][1] += draw(st.integers(1, 3))
    return n, rows


def submission_fails(circuits: dict[str, str], **options: Any) -> BaseException | None:
    try:
        build_submission(circuits, CONFIG, options)
    except (ValueError, TypeError) as exc:
        return exc
    return None


@FAST
@given(tilings(), st.integers(150, 1200))
def test_shot_groups_are_accepted_exactly_when_the_oracle_says_so(
    case: tuple[int, list[list[Any]]], max_bytes: int
) -> None:
    n, rows = case
    circuits = {f"c{i}": f"// circuit {i}\n" + "h q;" * (i % 7) for i in range(n)}
    error = submission_fails(circuits, shot_groups=rows)
    assert (error is None) == oracle_shot_groups(rows, n), (rows, error)
    event("accepted" if error is None else "refused")
    if error is not None:
        assert "shot_groups" in str(error) or "shots" in str(error)
        return
    # Chunked, each chunk's local groups pass the scheduler's own check and, together,
    # give every circuit the shots the batch-wide allocation gave it.
    submission = build_submission(circuits, CONFIG, {"shot_groups": rows})
    bodies = submission.chunk_bodies([encode_circuit(s) for s in submission.sources], max_bytes)
    per_circuit: list[int] = []
    for body in bodies:
        assert (
            len(json.dumps(body, separators=(",", ":"))) <= max_bytes or len(body["circuits"]) == 1
        )
        try:
            per_circuit += server_check_shot_groups(body["shot_groups"], len(body["circuits"]))
        except BadRequest as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"the scheduler refuses chunk groups {body['shot_groups']}: {exc.detail}")
    assert per_circuit == [shots for a, b, shots in rows for _ in range(a, b)]
    assert [label for body in bodies for label in body["circuits"]] == list(circuits)


# -- build_submission: ham_ops and circuit_ham_map against an oracle --------------------------

terms = st.text(st.sampled_from("IXYZ"), min_size=1, max_size=6)
bad_terms = st.one_of(st.just(""), st.text(st.sampled_from("IXYZAxz -;"), min_size=1, max_size=6))
groups = st.lists(st.one_of(terms, terms, terms, bad_terms), min_size=1, max_size=4)


def oracle_group(group: list[str]) -> bool:
    return all(t and not t.strip("IXYZ") for t in group) and len({len(t) for t in group}) == 1


@FAST
@given(
    st.lists(groups, min_size=1, max_size=3),
    st.integers(1, 12),
    st.one_of(st.none(), st.lists(st.integers(0, 12), max_size=4)),
    st.sampled_from([None, "EXPECTATION", "expectation", "EXECUTE"]),
)
def test_ham_ops_are_accepted_exactly_when_the_oracle_says_so(
    ham_groups: list[list[str]], n: int, cuts: list[int] | None, job_type: str | None
) -> None:
    ham_ops = "|".join(";".join(group) for group in ham_groups)
    circuits = {f"c{i}": "// c\n" for i in range(n)}
    options: dict[str, Any] = {"ham_ops": ham_ops}
    ham_map = None
    if cuts is not None:
        bounds = [0, *sorted(cuts), n]
        ham_map = [[a, b] for a, b in itertools.pairwise(bounds)]
        options["circuit_ham_map"] = ham_map
    if job_type is not None:
        options["job_type"] = job_type
    # Re-split what was joined: a ';' or '|' inside a drawn term makes more terms.
    parsed = [group.split(";") for group in ham_ops.split("|")]
    valid = (
        all(oracle_group(group) for group in parsed)
        and job_type in (None, "EXPECTATION", "expectation")
        and (
            (ham_map is None and len(parsed) == 1)
            or (
                ham_map is not None
                and len(ham_map) == len(parsed)
                and all(b > a for a, b in ham_map)
            )
        )
    )
    error = submission_fails(circuits, **options)
    assert (error is None) == valid, (ham_ops, ham_map, job_type, error)
    event("accepted" if error is None else "refused")
    if error is None:
        submission = build_submission(circuits, CONFIG, options)
        assert submission.observables is not None
        assert decode_observables(submission.observables) == parsed  # the server reads it back
        (body,) = submission.chunk_bodies([encode_circuit(s) for s in submission.sources], 10**6)
        assert body["observables"] == submission.observables
        assert body.get("circuit_ham_map") == ham_map
        assert "shots" not in body and "shot_groups" not in body
