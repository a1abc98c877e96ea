"""Turning a user's batch and keyword options into validated, encoded request chunks.

Everything here is pure and synchronous: it runs before any request is made,
so a bad batch or option fails fast and sends nothing.
"""

from __future__ import annotations

import base64
import enum
import json
import json.encoder
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from itertools import accumulate, repeat
from operator import add
from typing import Any

import attrs

from ._config import ClientConfig, check_shots, check_target
from ._errors import InvalidInputError, InvalidInputTypeError, PayloadTooLargeError
from ._gzip import gzip_bytes
from ._models import JobType
from ._parametric import ParametricCircuit
from ._wire import check_ham_map, check_shot_groups, wire_json

__all__ = ["Submission", "build_submission", "compress_ham_ops", "normalise_circuits"]

Piece = ParametricCircuit | tuple[tuple[str, str], ...]
"""A parametric circuit, or a run of plain `(label, source)` circuits."""

SUBMIT_OPTIONS = (
    "shots",
    "shot_groups",
    "ham_ops",
    "circuit_ham_map",
    "job_type",
    "tag",
    "simulator_cluster",
    "qpu_system",
    "execution_configuration",
)

_PAULI_TERM = re.compile(r"[IXYZ]+")


def normalise_circuits(circuits: object) -> list[tuple[str, str]]:
    """A mapping label -> QASM, or a sequence of sources (labelled "0", "1", ...).

    A sequence of `(label, source)` pairs is accepted too. A bare string is a
    `TypeError` (the classic mistake), an empty batch a `ValueError`.
    """
    return list(zip(*split_circuits(circuits), strict=True))


def split_circuits(circuits: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The labels and the sources of a batch, in order (see `normalise_circuits`)."""
    if isinstance(circuits, str | bytes):
        raise InvalidInputTypeError(
            "circuits must be a mapping label -> QASM source (or a sequence of sources), "
            "not a single string"
        )
    labels: tuple[object, ...]
    sources: tuple[object, ...]
    if isinstance(circuits, Mapping):
        labels, sources = tuple(circuits.keys()), tuple(circuits.values())
    elif isinstance(circuits, Sequence):
        if all(isinstance(c, tuple) and len(c) == 2 for c in circuits) and circuits:
            labels, sources = zip(*circuits, strict=True)
        else:
            labels, sources = tuple(map(str, range(len(circuits)))), tuple(circuits)
    else:
        raise InvalidInputTypeError(
            f"circuits must be a mapping or a sequence, not {type(circuits).__name__}"
        )
    if not labels:
        raise InvalidInputError("circuits is empty: nothing to submit")
    if not _plain_text(labels, sources):
        seen: set[str] = set()
        for label, source in zip(labels, sources, strict=True):
            _check_label(label, seen)
            if not isinstance(source, str):
                raise InvalidInputTypeError(
                    f"circuit {label!r} must be an OpenQASM source str, "
                    f"got {type(source).__name__}"
                )
        labels, sources = tuple(map(str, labels)), tuple(map(str, sources))
    return labels, sources  # type: ignore[return-value]


def _plain_text(labels: tuple[object, ...], sources: tuple[object, ...]) -> bool:
    """True when every label and source is an exact str, the labels ASCII, non-empty, unique.

    Such a batch (the usual one) needs no check one circuit at a time; each
    step here runs in C, so tens of thousands of circuits take a few ms.
    """
    return (
        set(map(type, labels)) == {str}
        and set(map(type, sources)) == {str}
        and all(map(str.isascii, labels))  # type: ignore[arg-type]
        and "" not in labels
        and len(set(labels)) == len(labels)
    )


def _check_label(label: object, seen: set[str]) -> None:
    """A label must be a non-empty, sendable str not used before in the batch."""
    if not isinstance(label, str):
        raise InvalidInputTypeError(f"circuit labels must be str, got {type(label).__name__}")
    if not label:
        raise InvalidInputError("circuit labels must not be empty")
    if not label.isascii() and not _is_utf8(label):
        raise InvalidInputError(f"circuit label {label!r} is not valid text (a lone surrogate)")
    if label in seen:
        raise InvalidInputError(f"duplicate circuit label {label!r}")
    seen.add(label)


def _pieces(circuits: object) -> tuple[Piece, ...] | None:
    """A batch holding parametric circuits as pieces in order; None for a plain batch.

    Such a batch is a `ParametricCircuit`, or a sequence of them and of
    `(label, source)` pairs.
    """
    if isinstance(circuits, ParametricCircuit):
        circuits = [circuits]
    if (
        isinstance(circuits, str | bytes | Mapping)
        or not isinstance(circuits, Sequence)
        or not any(isinstance(c, ParametricCircuit) for c in circuits)
    ):
        return None
    pieces: list[Piece] = []
    run: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in circuits:
        if isinstance(item, ParametricCircuit):
            if run:
                pieces.append(tuple(run))
                run = []
            for label in item.labels:
                _check_label(label, seen)
            pieces.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            label, source = item
            _check_label(label, seen)
            if not isinstance(source, str):
                raise InvalidInputTypeError(f"circuit {label!r} must be an OpenQASM source str")
            run.append((label, source))
        else:
            raise InvalidInputTypeError(
                "a batch with ParametricCircuits may hold only them and (label, source) "
                f"pairs, not {type(item).__name__}"
            )
    if run:
        pieces.append(tuple(run))
    return tuple(pieces)


def _is_utf8(text: str) -> bool:
    """False for text that cannot be sent: it holds lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def compress_ham_ops(ham_ops: str) -> str:
    """The wire form of `ham_ops`: each `|` group sparse-coded, gzipped and base64'd."""
    return "|".join(_compress_group(group) for group in ham_ops.split("|"))


def _compress_group(group: str) -> str:
    terms = group.split(";")
    sparse = ["".join(f"{p}{i}" for i, p in enumerate(term) if p != "I") or "I" for term in terms]
    blob = gzip_bytes(";".join(sparse).encode())
    return f"@gzs{len(terms[0])}:" + base64.b64encode(blob).decode("ascii")


def encode_circuit(source: str) -> str:
    """base64(gzip(utf-8 source)), as `add_circuits/` expects (see `_gzip` for the compressor)."""
    return base64.b64encode(gzip_bytes(source.encode("utf-8"))).decode("ascii")


@attrs.frozen
class Submission:
    """A validated batch: what `job/init/` and each `add_circuits/` chunk will carry."""

    labels: tuple[str, ...]
    sources: tuple[str, ...]
    init_body: dict[str, Any]
    job_type: JobType
    shots: int
    shot_groups: tuple[tuple[int, int, int], ...] | None = None
    observables: str | None = None
    circuit_ham_map: tuple[tuple[int, int], ...] | None = None
    pieces: tuple[Piece, ...] | None = None
    """Set when the batch holds parametric circuits (then `sources` is empty)."""

    @property
    def ordered_upload(self) -> bool:
        """Chunks must arrive strictly in order when positions are job-wide."""
        return self.circuit_ham_map is not None

    def check_sizes(self, max_bytes: int) -> None:
        """Refuse, before anything is sent, a circuit too large for a request on its own.

        Only circuits that could exceed the limit even incompressible are encoded;
        in a batch of small circuits, none is looked at one by one.
        """
        if not self.sources:
            return
        base = len(wire_json(self._body([], 0, 0)))
        # Room for the label, quotes and the per-chunk extras (a re-based shot group).
        fixed = base + max(map(len, map(_json_str, self.labels))) + 64

        def fits(raw: int) -> bool:
            return (raw + raw // 1000 * 5 + 64) * 4 // 3 + 4 + fixed <= max_bytes

        # A character is at most 4 bytes in UTF-8.
        if fits(4 * max(map(len, self.sources))):
            return
        for index, source in enumerate(self.sources):
            if not fits(len(source.encode("utf-8"))):
                self._check_alone(index, encode_circuit(source), max_bytes)

    def _check_alone(self, index: int, encoded: str, max_bytes: int) -> None:
        """PayloadTooLargeError if circuit `index` does not fit in a request even on its own."""
        size = len(wire_json(self._body([encoded], index, index + 1)))
        if size > max_bytes:
            raise PayloadTooLargeError(
                f"circuit {self.labels[index]!r} needs a {size}-byte request once encoded, "
                f"over the {max_bytes}-byte limit"
            )

    def chunk_bodies(
        self, encoded: Sequence[str], max_bytes: int, start: int = 0, target: int | None = None
    ) -> list[dict[str, Any]]:
        """Split `encoded[start:]` greedily into request bodies of about `target` bytes.

        No body exceeds `max_bytes` (`target` defaults to it; a circuit larger
        than `target` gets a body of its own). `encoded` holds the batch's first
        circuits, encoded, in order (indices are batch positions). Every body
        holds `finalized: "false"`, the longer wire value, so sizes stay within
        `max_bytes` whichever value the chunk's `final` flag puts there. Sizes
        are counted, not serialised: a body's JSON is its empty form's plus,
        per circuit, the label's and the encoded text's and 4 characters
        (quotes, colon, comma), less the last comma.
        """
        target = max_bytes if target is None else min(target, max_bytes)
        bodies: list[dict[str, Any]] = []
        n = len(encoded)
        # sums[i]: the characters the circuits start:start+i add to a body.
        labels = map(len, map(_json_str, self.labels[start:n]))
        entries = map(add, map(add, labels, map(len, encoded[start:n])), repeat(4))
        sums: list[int] = list(accumulate(entries, initial=0))
        origin = start

        def size(begin: int, end: int) -> int:
            empty = len(wire_json(self._body([], begin, begin, end)))
            return empty + sums[end - origin] - sums[begin - origin] - 1

        if start < n and size(start, n) <= target:  # the usual small batch: one body
            return [self._body(encoded[start:n], start, n)]
        while start < n:
            base = len(wire_json(self._body([], start, start)))
            room = target - base + sums[start - origin]
            end = max(start + 1, origin + bisect_right(sums, room, start - origin) - 1)
            if size(start, end) > max_bytes:
                # The estimate leaves out per-chunk extras (re-based shot_groups):
                # find the longest chunk that fits by bisection, not one by one.
                fits, too_long = start, end
                while too_long - fits > 1:
                    middle = (fits + too_long) // 2
                    if size(start, middle) <= max_bytes:
                        fits = middle
                    else:
                        too_long = middle
                if fits == start:
                    self._check_alone(start, encoded[start], max_bytes)
                end = fits
            bodies.append(self._body(encoded[start:end], start, end))
            start = end
        return bodies

    def _body(
        self, encoded: Sequence[str], start: int, end: int, extras_end: int | None = None
    ) -> dict[str, Any]:
        """The request body of circuits `start:end`, whose encoded forms are `encoded`.

        `extras_end` (default `end`) sets the range of the extras alone: the
        body of no circuit with the extras of `start:extras_end` measures a chunk.
        """
        return {
            "circuits": dict(zip(self.labels[start:end], encoded, strict=True)),
            "mode": "append",
            "finalized": "false",
            **self.extras(start, end if extras_end is None else extras_end),
        }

    def extras(self, start: int, end: int) -> dict[str, Any]:
        """The shots, shot groups (re-based) or observables of a chunk of circuits `start:end`."""
        body: dict[str, Any] = {}
        if self.observables is not None:
            body["observables"] = self.observables
            if self.circuit_ham_map is not None:
                body["circuit_ham_map"] = [list(r) for r in self.circuit_ham_map]
        elif self.shot_groups is not None:
            body["shot_groups"] = [
                [max(s, start) - start, min(e, end) - start, shots]
                for s, e, shots in self.shot_groups
                if s < end and e > start
            ]
        else:
            body["shots"] = self.shots
        return body


_json_str: Callable[[str], str] = json.encoder.encode_basestring_ascii
"""A str as JSON text, as `json.dumps` writes it (ASCII only, so its length is its size)."""


def build_submission(
    circuits: object, config: ClientConfig, options: Mapping[str, Any]
) -> Submission:
    """Check the batch and the `submit_circuits` keyword options against the protocol rules."""
    unknown = sorted(set(options) - set(SUBMIT_OPTIONS))
    if unknown:
        raise InvalidInputTypeError(
            f"submit_circuits() got unknown option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(SUBMIT_OPTIONS)}"
        )
    pieces = _pieces(circuits)
    sources: tuple[str, ...] = ()
    if pieces is None:
        labels, sources = split_circuits(circuits)
    else:
        labels = tuple(
            label
            for piece in pieces
            for label in (piece.labels if isinstance(piece, ParametricCircuit) else dict(piece))
        )
    n = len(labels)
    shots = check_shots(options.get("shots", config.shots))
    ham_ops = options.get("ham_ops")
    shot_groups = options.get("shot_groups")
    ham_map = options.get("circuit_ham_map")
    job_type = _job_type(options.get("job_type"), ham_ops)

    observables = None
    ham_ranges = None
    groups = None
    if ham_ops is not None:
        if shot_groups is not None:
            raise InvalidInputError("ham_ops and shot_groups are mutually exclusive")
        n_groups = _check_ham_ops(ham_ops)
        if ham_map is not None:
            ham_ranges = check_ham_map(ham_map, n_groups, n)
        elif n_groups > 1:
            raise InvalidInputError(
                f"ham_ops has {n_groups} '|' groups: circuit_ham_map must assign each a range"
            )
        observables = compress_ham_ops(ham_ops)
    elif ham_map is not None:
        raise InvalidInputError("circuit_ham_map needs ham_ops")
    if shot_groups is not None:
        groups = check_shot_groups(shot_groups, n)

    init_body: dict[str, Any] = {
        "tag": _check_str("tag", options.get("tag", config.tag)),
        "job_type": job_type.value,
        "use_packing": False,
    }
    init_body.update(_target(options, config))
    if "execution_configuration" in options:
        exec_conf = options["execution_configuration"]
        if not isinstance(exec_conf, Mapping):
            raise InvalidInputTypeError("execution_configuration must be a mapping")
        try:  # sent as JSON, and journaled: refused now rather than half-way
            json.dumps(exec_conf)
        except (TypeError, ValueError) as exc:
            raise InvalidInputTypeError(
                f"execution_configuration must be JSON (str, numbers, lists, dicts): {exc}"
            ) from None
        init_body["execution_configuration"] = dict(exec_conf)
    return Submission(
        labels=labels,
        sources=sources,
        init_body=init_body,
        job_type=job_type,
        shots=shots,
        shot_groups=groups,
        observables=observables,
        circuit_ham_map=ham_ranges,
        pieces=pieces,
    )


def _check_str(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputTypeError(f"{name} must be a non-empty str, got {value!r}")
    return value


def _target(options: Mapping[str, Any], config: ClientConfig) -> dict[str, str]:
    simulator, qpu = check_target(options.get("simulator_cluster"), options.get("qpu_system"))
    if qpu is not None:
        return {"qpu_system_name": qpu}
    if simulator is not None:
        return {"simulator_cluster": simulator}
    if config.qpu_system is not None:
        return {"qpu_system_name": config.qpu_system}
    return {"simulator_cluster": config.simulator_cluster or "qoro_maestro"}


def _job_type(value: object, ham_ops: object) -> JobType:
    if value is None:
        return JobType.EXPECTATION if ham_ops is not None else JobType.EXECUTE
    if isinstance(value, enum.Enum):  # any enum whose value is a job type (e.g. divi's JobType)
        value = value.value
    try:
        job_type = JobType(str(value).upper())
    except ValueError:
        names = ", ".join(t.value for t in JobType)
        raise InvalidInputError(f"job_type must be one of {names}, got {value!r}") from None
    if job_type is JobType.EXPECTATION and ham_ops is None:
        raise InvalidInputError("job_type EXPECTATION needs ham_ops (the observables)")
    if job_type is JobType.EXECUTE and ham_ops is not None:
        raise InvalidInputError("ham_ops implies job_type EXPECTATION, but job_type is EXECUTE")
    return job_type


def _check_ham_ops(ham_ops: object) -> int:
    if not isinstance(ham_ops, str) or not ham_ops:
        raise InvalidInputTypeError(
            f"ham_ops must be a non-empty str like 'XYZ;ZZI', got {ham_ops!r}"
        )
    groups = ham_ops.split("|")
    for k, group in enumerate(groups):
        terms = group.split(";")
        for term in terms:
            if not _PAULI_TERM.fullmatch(term):
                raise InvalidInputError(
                    f"ham_ops group {k}: term {term!r} must be a non-empty string of I, X, Y, Z"
                )
        if len({len(t) for t in terms}) != 1:
            raise InvalidInputError(f"ham_ops group {k}: terms must all have the same length")
    return len(groups)
