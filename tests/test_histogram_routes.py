"""The histogram decoder's two routes (pure Python, numpy) agree on everything.

`_decode(..., vector=False)` forces the pure route, `vector=True` the numpy
route (which hands anything it does not decode exactly back to the pure one);
`decode_histogram` picks by size. Both must give the same histogram for every
valid payload and the same refusal, word for word, for every corrupt one.
"""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncjob import _histogram, _histogram_np
from asyncjob._errors import ProtocolError
from asyncjob._histogram import _decode, decode_histogram, encode_histogram

from .test_histogram import mutated, mutations, uleb

VECTORS: dict[str, list[dict[str, Any]]] = json.loads(
    (Path(__file__).parent / "data" / "qh.json").read_text()
)


def outcome(vector: bool, encoding: str, n_bits: int, payload: str) -> object:
    """The decoded histogram, or the refusal's message."""
    try:
        return _decode(encoding, n_bits, payload, vector)
    except ProtocolError as exc:
        return f"refused: {exc}"


def both(encoding: str, n_bits: int, payload: str) -> object:
    """What both routes give; fails the test if they differ."""
    pure = outcome(False, encoding, n_bits, payload)
    assert outcome(True, encoding, n_bits, payload) == pure
    return pure


@pytest.mark.parametrize("vector", VECTORS["good"], ids=[v["name"] for v in VECTORS["good"]])
def test_good_vectors_decode_identically_on_both_routes(vector: dict[str, Any]) -> None:
    assert both(vector["encoding"], vector["n_bits"], vector["payload"]) == vector["histogram"]


@pytest.mark.parametrize("vector", VECTORS["corrupt"], ids=[v["name"] for v in VECTORS["corrupt"]])
def test_corrupt_vectors_are_refused_identically_on_both_routes(vector: dict[str, Any]) -> None:
    result = both(vector["encoding"], vector["n_bits"], vector["payload"])
    assert isinstance(result, str) and result.startswith("refused: ")


@st.composite
def histograms(draw: st.DrawFn) -> tuple[int, dict[str, int]]:
    """Widths on both sides of 63 bits, up to 400 outcomes, counts to 2**60 (sums over 2**63)."""
    n_bits = draw(st.one_of(st.integers(1, 12), st.integers(13, 63), st.integers(64, 80)))
    indices = st.integers(0, 2**n_bits - 1)
    counts = st.one_of(st.just(1), st.integers(1, 3), st.integers(1, 10**6), st.integers(1, 2**60))
    raw = draw(st.dictionaries(indices, counts, max_size=draw(st.sampled_from([8, 100, 400]))))
    return n_bits, {format(index, f"0{n_bits}b"): count for index, count in raw.items()}


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histograms())
def test_random_histograms_decode_identically(case: tuple[int, dict[str, int]]) -> None:
    n_bits, histogram = case
    encoded = encode_histogram(histogram, n_bits)
    assert both(str(encoded["encoding"]), n_bits, str(encoded["payload"])) == histogram


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histograms())
def test_the_numpy_route_decodes_what_it_can_itself(case: tuple[int, dict[str, int]]) -> None:
    n_bits, histogram = case
    if not histogram or n_bits > _histogram_np.MAX_WIDTH:
        return  # outside its domain: it hands these to the pure route (tested above)
    blob = base64.b64decode(str(encode_histogram(histogram, n_bits)["payload"]))
    pos = 4 if n_bits <= 255 else 3 + len(uleb(n_bits))
    unique, pos = _histogram._read_varint(blob, pos, 10, "")
    shots, pos = _histogram._read_varint(blob, pos, 10, "")
    _, pos = _histogram._read_varint(blob, pos, 10, "")
    assert _histogram_np.decode_body(blob, pos, n_bits, unique, shots) == histogram


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histograms(), mutations, st.integers(0, 255))
def test_corrupted_histograms_are_refused_identically(
    case: tuple[int, dict[str, int]], changes: list[tuple[str, int]], byte: int
) -> None:
    n_bits, histogram = case
    encoded = encode_histogram(histogram, n_bits)
    blob = mutated(base64.b64decode(str(encoded["payload"])), changes, byte)
    both(str(encoded["encoding"]), n_bits, base64.b64encode(blob).decode("ascii"))


def test_the_size_switch_sends_large_histograms_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = _histogram_np.decode_body

    def spy(data: bytes, pos: int, width: int, unique: int, shots: int) -> object:
        calls.append(unique)
        return real(data, pos, width, unique, shots)

    monkeypatch.setattr(_histogram_np, "decode_body", spy)
    small = {format(i, "020b"): 1 for i in range(0, 1 << 20, 1 << 17)}  # 8 outcomes
    large = {format(i, "020b"): i % 5 + 1 for i in range(0, 1 << 20, 1 << 10)}  # 1,024
    for histogram in (small, large):
        encoded = encode_histogram(histogram, 20)
        assert decode_histogram("qh1", 20, str(encoded["payload"])) == histogram
    assert calls == [len(large)]


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(histograms(), mutations, st.integers(0, 255), st.booleans())
def test_a_payload_too_short_for_the_numpy_route_never_loads_it(
    case: tuple[int, dict[str, int]], changes: list[tuple[str, int]], byte: int, corrupt: bool
) -> None:
    """`may_take_vector_route` False: decoding does not touch numpy (nor import it)."""
    n_bits, histogram = case
    encoded = encode_histogram(histogram, n_bits)
    if corrupt:
        blob = mutated(base64.b64decode(str(encoded["payload"])), changes, byte)
        encoded["payload"] = base64.b64encode(blob).decode("ascii")
    asked: list[bool] = []
    real = _histogram._vector_route

    def spy() -> Any:
        asked.append(True)
        return real()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_histogram, "_vector_route", spy)
        with contextlib.suppress(ProtocolError):
            _histogram.decode_result(encoded)
    if not _histogram.may_take_vector_route(encoded):
        assert not asked
    if not corrupt and _histogram._vector_wins(len(histogram), n_bits):
        assert asked  # not vacuous: the histograms the route is for do ask for it


def test_small_and_large_histograms_on_either_side_of_the_bound() -> None:
    small = encode_histogram({format(i, "010b"): 3 for i in range(16)})
    large = encode_histogram({format(i, "010b"): 3 for i in range(400)})
    assert not _histogram.may_take_vector_route(small)
    assert _histogram.may_take_vector_route(large)
    assert not _histogram.may_take_vector_route({"payload": "x" * 10**4, "n_bits": "10"})
    assert not _histogram.may_take_vector_route([1, 2])
