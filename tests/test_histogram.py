"""Tests for the qh1/qh2 histogram codec: the shared vectors, hand-made corruptions and fuzzing."""

from __future__ import annotations

import base64
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncjob._errors import ProtocolError
from asyncjob._histogram import MAX_WIDTH, decode_histogram, decode_result, encode_histogram

VECTORS: dict[str, list[dict[str, Any]]] = json.loads(
    (Path(__file__).parent / "data" / "qh.json").read_text()
)
GOOD = VECTORS["good"]
CORRUPT = VECTORS["corrupt"]


def uleb(value: int) -> bytes:
    """ULEB128, written independently of the module under test."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def qh1(*fields: bytes | int) -> str:
    """A QH1 payload from raw byte fields and ints (each int becomes one ULEB128 varint)."""
    return b64(b"QH1" + b"".join(f if isinstance(f, bytes) else uleb(f) for f in fields))


# --- the shared vectors ---------------------------------------------------------------------


@pytest.mark.parametrize("vector", GOOD, ids=[v["name"] for v in GOOD])
def test_good_vector_decodes_to_its_histogram_in_order(vector: dict[str, Any]) -> None:
    decoded = decode_histogram(vector["encoding"], vector["n_bits"], vector["payload"])
    assert decoded == vector["histogram"]
    assert list(decoded) == sorted(vector["histogram"], key=lambda key: int(key, 2))


@pytest.mark.parametrize("vector", GOOD, ids=[v["name"] for v in GOOD])
def test_good_vector_through_decode_result(vector: dict[str, Any]) -> None:
    obj = {key: vector[key] for key in ("encoding", "n_bits", "payload")}
    assert decode_result(obj) == vector["histogram"]


@pytest.mark.parametrize("vector", GOOD, ids=[v["name"] for v in GOOD])
def test_encoder_reproduces_good_vectors(vector: dict[str, Any]) -> None:
    encoded = encode_histogram(vector["histogram"], vector["n_bits"])
    expected_encoding = "qh1" if vector["n_bits"] <= 255 else "qh2"
    assert encoded["encoding"] == expected_encoding
    assert encoded["n_bits"] == vector["n_bits"]
    if vector["encoding"] == expected_encoding:  # "qh2-small" deliberately uses qh2 for 8 bits
        assert encoded["payload"] == vector["payload"]


@pytest.mark.parametrize("vector", CORRUPT, ids=[v["name"] for v in CORRUPT])
def test_corrupt_vector_is_rejected(vector: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        decode_histogram(vector["encoding"], vector["n_bits"], vector["payload"])


def test_corrupt_vector_messages_name_the_fault() -> None:
    by_name = {v["name"]: v for v in CORRUPT}
    expected = {
        "wrong-magic": "neither QH1 nor QH2",
        "magic-vs-encoding": "encoding 'qh2'",
        "width-mismatch": "width 2 but n_bits 3",
        "truncated": "stream ends",
        "truncated-varint": "stream ends",
        "shot-sum": "not 999 shots",
        "index-too-wide": "needs 3 bits, not 2",
        "huge-width": "2097152",
    }
    assert set(expected) == set(by_name)
    for name, fragment in expected.items():
        v = by_name[name]
        with pytest.raises(ProtocolError, match=fragment):
            decode_histogram(v["encoding"], v["n_bits"], v["payload"])


# --- hand-made corruptions ------------------------------------------------------------------

# bell: width 2, unique 2, shots 1000, gaps 0 3, rle [1 run, first 0, 2], extras 505 491
BELL = (b"\x02", 2, 1000, 2, 0, 3, 3, b"\x01\x00\x02", 2, 505, 491)


def test_hand_made_bell_is_valid() -> None:
    assert decode_histogram("qh1", 2, qh1(*BELL)) == {"00": 507, "11": 493}


CORRUPTIONS: list[tuple[str, str, int, str, str]] = [
    ("bad-base64", "qh1", 2, "UUgx!!!", "base64"),
    ("bad-padding", "qh1", 2, "UUgxA", "base64"),
    ("non-ascii", "qh1", 2, "UUgx\u00e9", "base64"),
    ("empty-payload", "qh1", 2, "", "too short"),
    ("only-magic", "qh1", 2, b64(b"QH1"), "too short"),
    ("unknown-encoding", "qh3", 2, qh1(*BELL), "unsupported"),
    ("upper-case-encoding", "QH1", 2, qh1(*BELL), "unsupported"),
    ("n-bits-zero", "qh1", 0, qh1(*BELL), "n_bits"),
    ("n-bits-over-max", "qh2", MAX_WIDTH + 1, qh1(*BELL), "n_bits"),
    (
        "zero-gap-after-first",
        "qh1",
        2,
        qh1(b"\x02", 2, 2, 2, 1, 0, 3, b"\x01\x01\x02", 0),
        "increas",
    ),
    ("runs-short", "qh1", 2, qh1(b"\x02", 2, 2, 2, 0, 3, 3, b"\x01\x01\x01", 0), "runs cover 1"),
    ("runs-long", "qh1", 2, qh1(b"\x02", 2, 2, 2, 0, 3, 3, b"\x01\x01\x03", 0), "runs cover 3"),
    ("gaps-vs-unique", "qh1", 2, qh1(b"\x02", 2, 2, 1, 0, 3, b"\x01\x01\x02", 0), "1 gaps"),
    ("extras-len-low", "qh1", 2, qh1(*BELL[:8], 1, 505), "1 extra counts"),
    ("extras-len-high", "qh1", 2, qh1(*BELL[:8], 3, 505, 491, 0), "3 extra counts"),
    ("trailing-byte", "qh1", 2, qh1(*BELL, b"\x00"), "1 trailing"),
    ("shots-low", "qh1", 2, qh1(b"\x02", 2, 999, *BELL[3:]), "not 999"),
    ("shots-high", "qh1", 2, qh1(b"\x02", 2, 1001, *BELL[3:]), "not 1001"),
    ("rle-flag-2", "qh1", 2, qh1(b"\x02", 2, 2, 2, 0, 3, 3, b"\x01\x02\x02", 0), "flag"),
    ("rle-stray-byte", "qh1", 2, qh1(b"\x02", 2, 2, 2, 0, 3, 4, b"\x01\x01\x02\x00", 0), "stray"),
    ("rle-past-end", "qh1", 2, qh1(b"\x02", 2, 2, 2, 0, 3, 9, b"\x01\x01\x02"), "run-length"),
    ("rle-too-many-runs", "qh1", 2, qh1(b"\x02", 2, 2, 2, 0, 3, 3, b"\x05\x01\x02", 0), "runs"),
    ("rle-missing-with-outcomes", "qh1", 2, qh1(b"\x02", 2, 2, 2, 0, 3, 0, 0), "runs cover 0"),
    ("unique-forged-huge", "qh1", 2, qh1(b"\x02", 10**15, 10**15, 10**15, 0), "cannot fit"),
    ("gap-truncated", "qh1", 2, qh1(b"\x02", 2, 2, 2, 0, b"\x83"), "stream ends"),
    ("count-varint-too-long", "qh1", 2, qh1(b"\x02", b"\x80" * 10 + b"\x01"), "longer than"),
    ("gap-varint-too-long", "qh1", 2, qh1(b"\x02", 1, 1, 1, b"\x80\x80\x00", 3), "longer than"),
    ("qh1-width-byte-mismatch", "qh1", 2, qh1(b"\x82", *BELL[1:]), "width 130"),
    ("qh2-width-mismatch", "qh2", 2, b64(b"QH2" + uleb(3) + bytes(5)), "width 3"),
    ("qh2-width-truncated", "qh2", 2, b64(b"QH2\x80\x80"), "stream ends"),
]


@pytest.mark.parametrize(
    ("encoding", "n_bits", "payload", "reason"),
    [case[1:] for case in CORRUPTIONS],
    ids=[case[0] for case in CORRUPTIONS],
)
def test_hand_made_corruption_is_rejected(
    encoding: str, n_bits: int, payload: str, reason: str
) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode_histogram(encoding, n_bits, payload)


def test_empty_histogram_round_trips() -> None:
    encoded = encode_histogram({}, 5)
    assert decode_histogram("qh1", 5, str(encoded["payload"])) == {}
    assert decode_histogram("qh1", 5, qh1(b"\x05", 0, 0, 0, 0, 0)) == {}


def test_non_string_payload_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="base64 string"):
        decode_histogram("qh1", 2, b"UUgx")  # type: ignore[arg-type]


@pytest.mark.parametrize("n_bits", [2, 2**30])
def test_qh2_width_2_to_the_30_is_rejected_at_once(n_bits: int) -> None:
    payload = b64(b"QH2" + uleb(2**30) + bytes([1, 1, 1, 0, 3, 1, 0, 1, 0, 0]))
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ProtocolError, match=r"2\*\*20"):
            decode_histogram("qh2", n_bits, payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 100_000


def test_forged_outcome_count_allocates_nothing_big() -> None:
    payload = qh1(b"\x14", 2**60, 2**60, 2**60, *([1] * 100))
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="cannot fit"):
            decode_histogram("qh1", 20, payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000


def test_too_many_characters_of_keys_is_rejected() -> None:
    # 300 one-byte gaps at the widest width would render 300 MiB of keys.
    blob = b"QH2" + uleb(MAX_WIDTH) + uleb(300) + uleb(300) + uleb(300) + b"\x01" * 400
    with pytest.raises(ProtocolError, match="too large"):
        decode_histogram("qh2", MAX_WIDTH, b64(blob))


def test_widest_outcomes_round_trip() -> None:
    # The top index is a ~150 kB varint: decoding must stay linear in its length.
    top = "1" * MAX_WIDTH
    histogram = {"0" * MAX_WIDTH: 3, "0" * (MAX_WIDTH - 1) + "1": 1, top: 2}
    encoded = encode_histogram(histogram)
    assert encoded["encoding"] == "qh2"
    started = time.perf_counter()
    assert decode_histogram("qh2", MAX_WIDTH, str(encoded["payload"])) == histogram
    assert time.perf_counter() - started < 5.0


# --- round trip and fuzzing -----------------------------------------------------------------


@st.composite
def histograms(draw: st.DrawFn) -> tuple[int, dict[str, int]]:
    """A width in 1..300 (both the qh1 and the qh2 range) and a histogram of that width."""
    n_bits = draw(st.one_of(st.integers(1, 20), st.integers(250, 300), st.integers(1, 300)))
    indices = st.integers(0, 2**n_bits - 1)
    counts = st.one_of(st.just(1), st.integers(1, 3), st.integers(1, 10**6))
    raw = draw(st.dictionaries(indices, counts, max_size=40))
    return n_bits, {format(index, f"0{n_bits}b"): count for index, count in raw.items()}


@given(histograms())
def test_encode_then_decode_round_trips(case: tuple[int, dict[str, int]]) -> None:
    n_bits, histogram = case
    encoded = encode_histogram(histogram, n_bits)
    assert encoded["encoding"] == ("qh1" if n_bits <= 255 else "qh2")
    assert encoded["n_bits"] == n_bits
    decoded = decode_result(encoded)
    assert decoded == histogram
    assert isinstance(decoded, dict)
    assert list(decoded) == sorted(histogram, key=lambda key: int(key, 2))


def check_decodes_or_protocol_error(encoding: str, n_bits: int, payload: str) -> None:
    """Decoding garbage either fails with ProtocolError or yields a well-formed histogram."""
    try:
        decoded = decode_histogram(encoding, n_bits, payload)
    except ProtocolError:
        return
    assert all(len(key) == n_bits and set(key) <= {"0", "1"} for key in decoded)
    assert all(count >= 1 for count in decoded.values())
    assert list(decoded) == sorted(decoded, key=lambda key: int(key, 2))


prefixes = st.sampled_from([b"", b"QH1", b"QH2", b"QH1\x02", b"QH1\x03\x02", b"QH2\x02\x02"])


@given(prefixes, st.binary(max_size=60), st.sampled_from(["qh1", "qh2"]), st.integers(1, 300))
def test_random_bytes_only_raise_protocol_error(
    prefix: bytes, tail: bytes, encoding: str, n_bits: int
) -> None:
    check_decodes_or_protocol_error(encoding, n_bits, b64(prefix + tail))


@given(st.text(max_size=40), st.sampled_from(["qh1", "qh2", "", "x"]), st.integers(-2, 300))
def test_random_text_only_raises_protocol_error(payload: str, encoding: str, n_bits: int) -> None:
    check_decodes_or_protocol_error(encoding, n_bits, payload)


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "cut"]), st.integers(0, 10**6)),
    min_size=1,
    max_size=4,
)


def mutated(payload: bytes, edits: list[tuple[str, int]], byte: int) -> bytes:
    """`payload` with `edits` applied: bits flipped, bytes set, inserted, deleted, or a cut."""
    blob = bytearray(payload)
    for kind, where in edits:
        at = where % (len(blob) + 1)
        if kind == "insert":
            blob.insert(at, byte)
        elif not blob or at == len(blob):
            continue
        elif kind == "flip":
            blob[at] ^= 1 << (where % 8)
        elif kind == "set":
            blob[at] = byte
        elif kind == "delete":
            del blob[at]
        else:
            del blob[at:]
    return bytes(blob)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(GOOD), mutations, st.integers(0, 255))
def test_mutated_good_payloads_only_raise_protocol_error(
    vector: dict[str, Any], edits: list[tuple[str, int]], byte: int
) -> None:
    blob = mutated(base64.b64decode(vector["payload"]), edits, byte)
    check_decodes_or_protocol_error(vector["encoding"], vector["n_bits"], b64(blob))


# --- decode_result --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        None,
        0.25,
        "text",
        [1, 2],
        {},
        {"expval": -0.5},
        {"payload": ""},
        {"payload": None},
        {"encoding": "qh1", "n_bits": 2, "payload": ""},
        {"encoding": "qh1", "n_bits": 2},
    ],
)
def test_decode_result_passes_through_values_without_payload(obj: object) -> None:
    assert decode_result(obj) is obj


@pytest.mark.parametrize(
    "obj",
    [
        {"payload": GOOD[0]["payload"]},
        {"encoding": None, "n_bits": 2, "payload": GOOD[0]["payload"]},
        {"encoding": "qh9", "n_bits": 2, "payload": GOOD[0]["payload"]},
        {"encoding": "qh1", "payload": GOOD[0]["payload"]},
        {"encoding": "qh1", "n_bits": "2", "payload": GOOD[0]["payload"]},
        {"encoding": "qh1", "n_bits": 2.0, "payload": GOOD[0]["payload"]},
        {"encoding": "qh1", "n_bits": True, "payload": GOOD[0]["payload"]},
        {"encoding": "qh1", "n_bits": 2, "payload": 12345},
        {"encoding": "qh1", "n_bits": 2, "payload": "not base64!"},
    ],
)
def test_decode_result_rejects_bad_envelopes(obj: object) -> None:
    with pytest.raises(ProtocolError):
        decode_result(obj)


# --- encoder input checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "n_bits"),
    [
        ({}, None),
        ({"01": 1}, 3),
        ({"01": 1, "1": 1}, None),
        ({"0_1": 1}, 3),
        ({" 01": 1}, 3),
        ({"012": 1}, 3),
        ({"01": 0}, 2),
        ({"01": -1}, 2),
        ({"01": True}, 2),
        ({"01": 1.5}, 2),
        ({"": 1}, None),
        ({"0": 1}, 0),
        ({}, MAX_WIDTH + 1),
    ],
)
def test_encoder_rejects_bad_input(counts: dict[str, Any], n_bits: int | None) -> None:
    with pytest.raises(ValueError):
        encode_histogram(counts, n_bits)
