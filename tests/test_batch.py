"""Batch normalisation, option rules and chunking: everything decided before a request."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import os

import pytest

from asyncjob import ConfigurationError, JobType, PayloadTooLargeError
from asyncjob._batch import build_submission, compress_ham_ops, encode_circuit, normalise_circuits
from asyncjob._config import ClientConfig
from asyncjob._gzip import gzip_bytes

from .conftest import BASE, BELL, TOKEN

CONFIG = ClientConfig.build(BASE, TOKEN, 1000)


def sub(circuits: object = None, **options: object):  # type: ignore[no-untyped-def]
    return build_submission(circuits or {"a": BELL, "b": BELL, "c": BELL}, CONFIG, options)


class TestNormalise:
    def test_mapping_keeps_order(self) -> None:
        assert normalise_circuits({"x": BELL, "a": BELL}) == [("x", BELL), ("a", BELL)]

    def test_sequence_is_labelled_by_position(self) -> None:
        assert normalise_circuits([BELL, BELL]) == [("0", BELL), ("1", BELL)]

    def test_pairs_are_accepted(self) -> None:
        assert normalise_circuits([("p", BELL), ("q", BELL)]) == [("p", BELL), ("q", BELL)]

    def test_bare_string_is_type_error(self) -> None:
        with pytest.raises(TypeError, match="not a single string"):
            normalise_circuits(BELL)

    def test_empty_is_value_error(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            normalise_circuits({})

    def test_duplicate_labels_in_pairs(self) -> None:
        with pytest.raises(ValueError, match="duplicate circuit label 'p'"):
            normalise_circuits([("p", BELL), ("p", BELL)])

    @pytest.mark.parametrize("bad", [{1: BELL}, {"": BELL}, {"a": b"x"}, {"a": None}, 42])
    def test_bad_items(self, bad: object) -> None:
        with pytest.raises((TypeError, ValueError)):
            normalise_circuits(bad)


class TestOptions:
    def test_unknown_option_lists_accepted(self) -> None:
        with pytest.raises(TypeError, match=r"unknown option\(s\) shotz; accepted: shots"):
            sub(shotz=10)

    @pytest.mark.parametrize("shots", [0, -1, 1.5, "10", True])
    def test_bad_shots(self, shots: object) -> None:
        with pytest.raises(ConfigurationError, match="shots must be a positive int"):
            sub(shots=shots)

    def test_defaults(self) -> None:
        s = sub()
        assert s.job_type is JobType.EXECUTE
        assert s.init_body == {
            "tag": "default",
            "job_type": "EXECUTE",
            "use_packing": False,
            "simulator_cluster": "qoro_maestro",
        }

    def test_qpu_target(self) -> None:
        assert sub(qpu_system="ibm").init_body["qpu_system_name"] == "ibm"
        with pytest.raises(ConfigurationError):
            sub(qpu_system="ibm", simulator_cluster="s")

    @pytest.mark.parametrize(
        ("groups", "message"),
        [
            ([[0, 2, 10], [1, 3, 10]], "overlap"),
            ([[0, 1, 10], [2, 3, 10]], "leave a gap"),
            ([[0, 4, 10]], "goes past"),
            ([[0, 2, 10]], r"cover \[0, 2\)"),
            ([[1, 3, 10]], "leave a gap"),
            ([[0, 0, 10], [0, 3, 10]], "empty or reversed"),
            ([[0, 3, 0]], "shots"),
            ([[0, 3]], "3 ints"),
            ("0,3,10", "list"),
            ([], "empty"),
        ],
    )
    def test_shot_group_tiling(self, groups: object, message: str) -> None:
        with pytest.raises((ValueError, TypeError), match=message):
            sub(shot_groups=groups)

    def test_ham_ops_implies_expectation(self) -> None:
        s = sub(ham_ops="ZZ;XX")
        assert s.job_type is JobType.EXPECTATION
        assert s.observables == compress_ham_ops("ZZ;XX")

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"ham_ops": "ZZ;XXX"}, "same length"),
            ({"ham_ops": "ZQ"}, "I, X, Y, Z"),
            ({"ham_ops": "ZZ;"}, "I, X, Y, Z"),
            ({"ham_ops": ""}, "non-empty"),
            ({"ham_ops": "ZZ", "job_type": "EXECUTE"}, "implies job_type EXPECTATION"),
            ({"job_type": "EXPECTATION"}, "needs ham_ops"),
            ({"job_type": "VALIDATE"}, "job_type must be one of"),
            ({"ham_ops": "ZZ", "shot_groups": [[0, 3, 1]]}, "mutually exclusive"),
            ({"ham_ops": "ZZ|XX"}, "circuit_ham_map must assign"),
            ({"ham_ops": "ZZ|XX", "circuit_ham_map": [[0, 3]]}, "1 ranges but ham_ops has 2"),
            ({"ham_ops": "ZZ|XX", "circuit_ham_map": [[0, 1], [2, 3]]}, "gap"),
            ({"circuit_ham_map": [[0, 3]]}, "needs ham_ops"),
        ],
    )
    def test_ham_rules(self, options: dict[str, object], message: str) -> None:
        with pytest.raises((ValueError, TypeError), match=message):
            sub(**options)


class TestWireForms:
    def test_compress_ham_ops_matches_protocol_example(self) -> None:
        wire = compress_ham_ops("ZZII;IZIZ;IIII")
        assert wire.startswith("@gzs4:")
        assert gzip.decompress(base64.b64decode(wire[6:])) == b"Z0Z1;Z1Z3;I"

    def test_groups_are_compressed_separately(self) -> None:
        wire = compress_ham_ops("XYZ;XXZ|ZI;IZ")
        first, second = wire.split("|")
        assert first.startswith("@gzs3:") and second.startswith("@gzs2:")
        assert gzip.decompress(base64.b64decode(second[6:])) == b"Z0;Z1"

    def test_encode_circuit_round_trips(self) -> None:
        assert gzip.decompress(base64.b64decode(encode_circuit(BELL))).decode() == BELL

    def test_encode_circuit_is_gzip_bytes_in_base64(self) -> None:
        source = BELL + "".join(f"// caf\u00e9 {i}\n" for i in range(200))
        packed = gzip_bytes(source.encode("utf-8"))
        assert encode_circuit(source) == base64.b64encode(packed).decode("ascii")


class TestChunking:
    def test_single_chunk(self) -> None:
        s = sub()
        bodies = s.chunk_bodies([encode_circuit(x) for x in s.sources], 10_000)
        assert len(bodies) == 1
        assert bodies[0]["shots"] == 1000 and list(bodies[0]["circuits"]) == ["a", "b", "c"]

    def test_chunks_stay_under_cap_and_keep_order(self) -> None:
        circuits = {f"c{i}": BELL + f"// {i}\n" for i in range(50)}
        s = sub(circuits)
        encoded = [encode_circuit(x) for x in s.sources]
        cap = 1000
        bodies = s.chunk_bodies(encoded, cap)
        assert len(bodies) > 5
        for body in bodies:
            assert len(json.dumps(body, separators=(",", ":")).encode()) <= cap
        labels = [label for body in bodies for label in body["circuits"]]
        assert labels == list(circuits)

    def test_shot_groups_are_rebased_per_chunk(self) -> None:
        circuits = {f"c{i}": BELL + f"// {i}\n" for i in range(10)}
        s = sub(circuits, shot_groups=[[0, 3, 100], [3, 10, 200]])
        bodies = s.chunk_bodies([encode_circuit(x) for x in s.sources], 700)
        assert len(bodies) > 2
        offset = 0
        for body in bodies:
            n = len(body["circuits"])
            groups = body["shot_groups"]
            assert groups[0][0] == 0 and groups[-1][1] == n
            for (_, end, _), (start, _, _) in itertools.pairwise(groups):
                assert end == start
            for start, end, shots in groups:
                for local in range(start, end):
                    assert shots == (100 if offset + local < 3 else 200)
            offset += n
        assert offset == 10

    def test_observables_and_ham_map_in_every_chunk(self) -> None:
        circuits = {f"c{i}": BELL + f"// {i}\n" for i in range(6)}
        s = sub(circuits, ham_ops="ZZ|XX", circuit_ham_map=[[0, 2], [2, 6]])
        assert s.ordered_upload
        bodies = s.chunk_bodies([encode_circuit(x) for x in s.sources], 700)
        assert len(bodies) > 1
        for body in bodies:
            assert body["circuit_ham_map"] == [[0, 2], [2, 6]]
            assert body["observables"] == compress_ham_ops("ZZ|XX")
            assert "shots" not in body

    def test_oversized_circuit_is_refused(self) -> None:
        s = sub({"big": BELL})
        noise = base64.b64encode(os.urandom(3000)).decode()
        with pytest.raises(PayloadTooLargeError, match="'big'"):
            s.chunk_bodies([noise], 1000)


def test_a_circuit_that_fits_only_without_its_shot_group_is_refused_up_front() -> None:
    noise = "// " + os.urandom(1500).hex() + "\n"
    s = sub({"a": BELL, "big": BELL + noise}, shot_groups=[[0, 1, 10], [1, 2, 20]])
    alone = len(json.dumps(s._body([encode_circuit(s.sources[1])], 1, 2)).replace(" ", ""))
    s.check_sizes(alone)  # exactly fits
    with pytest.raises(PayloadTooLargeError, match=f"'big' needs a {alone}-byte request"):
        s.check_sizes(alone - 1)
    with pytest.raises(PayloadTooLargeError, match="'big'"):
        s.chunk_bodies([encode_circuit(x) for x in s.sources], alone - 1)


def test_chunks_aim_at_the_target_and_never_pass_the_cap() -> None:
    circuits = {f"c{i:03d}": BELL + f"// {i} {os.urandom(100).hex()}\n" for i in range(200)}
    s = sub(circuits)
    encoded = [encode_circuit(x) for x in s.sources]
    encoded[7] = base64.b64encode(os.urandom(3000)).decode()  # over the target, under the cap
    bodies = s.chunk_bodies(encoded, 10_000, target=2_000)
    sizes = [len(json.dumps(body, separators=(",", ":")).encode()) for body in bodies]
    assert max(sizes) <= 10_000
    several = [size for size, b in zip(sizes, bodies, strict=True) if len(b["circuits"]) > 1]
    assert several and max(several) <= 2_000
    assert any(
        len(b["circuits"]) == 1 and size > 2_000 for size, b in zip(sizes, bodies, strict=True)
    )
    assert [label for body in bodies for label in body["circuits"]] == list(circuits)
    assert len(s.chunk_bodies(encoded, 10_000)) < len(bodies)


def test_one_shot_group_per_circuit_chunks_under_the_cap() -> None:
    circuits = {f"c{i:03d}": BELL + f"// {i}\n" for i in range(300)}
    s = sub(circuits, shot_groups=[[i, i + 1, 10 + i] for i in range(300)])
    bodies = s.chunk_bodies([encode_circuit(x) for x in s.sources], 4000)
    assert len(bodies) > 5
    offset = 0
    for body in bodies:
        assert len(json.dumps(body, separators=(",", ":")).encode()) <= 4000
        n = len(body["circuits"])
        assert body["shot_groups"] == [[k, k + 1, 10 + offset + k] for k in range(n)]
        offset += n
    assert offset == 300


@pytest.mark.parametrize("groups", [False, True], ids=["shots", "a shot group per circuit"])
def test_chunks_are_filled_to_the_byte_whatever_the_labels(groups: bool) -> None:
    """Chunk sizes are counted, not serialised: each chunk is exactly as full as fits.

    Labels that JSON escapes (quotes, backslashes, non-ASCII, control
    characters) take more room than their length; a chunk plus its next
    circuit must be over the cap, and no chunk over it.
    """
    names = ['q"uote', "back\\slash", "caf\u00e9", "tab\there", "\U0001f600", "plain"]
    circuits = {f"{names[i % len(names)]}{i}": BELL + f"// {i}\n" for i in range(120)}
    options = {"shot_groups": [[i, i + 1, 10 + i] for i in range(120)]} if groups else {}
    s = sub(circuits, **options)
    encoded = [encode_circuit(x) for x in s.sources]

    def size(start: int, end: int) -> int:
        body = s._body(encoded[start:end], start, end)
        return len(json.dumps(body, separators=(",", ":")).encode())

    cap = 1500
    bodies = s.chunk_bodies(encoded, cap)
    assert len(bodies) > 5
    start = 0
    for body in bodies:
        end = start + len(body["circuits"])
        assert size(start, end) <= cap
        if end < len(encoded):
            assert size(start, end + 1) > cap
        start = end
    assert start == len(encoded)


def test_a_batch_of_plain_text_is_split_without_copies_and_checked_like_any() -> None:
    """The fast path for exact-str batches gives what the general one gives."""

    class Label(str):
        pass

    plain = {f"c{i}": BELL for i in range(5)}
    assert normalise_circuits(plain) == [(f"c{i}", BELL) for i in range(5)]
    subclassed = {Label(f"c{i}"): BELL for i in range(5)}
    normalised = normalise_circuits(subclassed)
    assert normalised == [(f"c{i}", BELL) for i in range(5)]
    assert all(type(label) is str for label, _ in normalised)
    pairs = [("a", BELL), ("b", BELL + "// 2\n")]
    assert normalise_circuits(pairs) == pairs
    with pytest.raises(ValueError, match="duplicate"):
        normalise_circuits([("a", BELL), ("a", BELL)])
    with pytest.raises(ValueError, match="empty"):
        normalise_circuits({"": BELL, "b": BELL})


def test_pairs_may_be_any_tuple_type() -> None:
    """`(label, source)` pairs given as namedtuples are pairs, as the docs say."""
    from typing import NamedTuple

    class Pair(NamedTuple):
        label: str
        source: str

    assert normalise_circuits([Pair("a", "x"), Pair("b", "y")]) == [("a", "x"), ("b", "y")]
