"""Validate OpenQASM 2.0 and 3 circuit sources before they leave the machine.

Three layers, cheapest first; each hands over to the next only when it cannot decide:

1. A hot path for programs made only of common statements (header, ``include``,
   register declarations, gate calls with numeric angles, measure, reset,
   barrier): angles are masked with one regular expression, the text is split
   at ';', each statement is parsed once (memoised across circuits) and the
   semantic checks run on the pieces. The usual program (declarations, then gates
   on indexed qubits and measurements) skips the per-statement work: after the
   declarations one regex compiled for its register layout checks the whole rest
   (`_body`). It only ever *accepts*; on any doubt it defers to layer 2.
2. A token-level checker for the same subset (comments anywhere, parameter
   expressions with ``sin``/``cos``/..., trailing commas). It accepts, rejects a
   definite error with its exact line, column and token, or, when it meets
   something outside the subset (gate definitions, ``if``, loops, modifiers,
   classical types, ...), hands the whole program to layer 3.
3. The full path: ``openqasm3.parse`` (the reference ANTLR grammar), then the
   same semantic checks applied to the AST, where gates the program defines
   count as known. ``full=True`` always takes this path.

Semantic checks (the parser has none): the version header, registers declared
before use and only once, positive register sizes, indices in range (a negative
index counts from the end in OpenQASM 3 and is an error in OpenQASM 2), known gate
names (``qelib1.inc`` and ``stdgates.inc`` tables, the ``U``/``CX`` built-ins),
parameter and qubit counts, no qubit twice in one gate, equal register sizes in
a broadcast, matching measure widths, gate bodies that use only their own qubit
arguments.

The header is checked leniently but correctly: ``OPENQASM 2.0;``, ``OPENQASM 3;``,
``OPENQASM 3.0;`` and ``OPENQASM 3.1;`` are accepted, any other version is an error.
OpenQASM 3 makes the header optional, so a program without one is read as
OpenQASM 3 (an OpenQASM 2 program must therefore start with ``OPENQASM 2.0;``
to get the ``U``/``CX`` built-ins). Either library may be included under either
version; an unknown include file switches the unknown-gate check off.

Limitations: the reference grammar is OpenQASM 3's, so OpenQASM 2 constructs it
lacks (``opaque``) are rejected and OpenQASM 3 syntax inside an ``OPENQASM 2.0``
program is accepted. On the full path, checks that need values (non-literal
sizes or indices, aliases, loop variables, subroutine bodies, hardware qubits)
are skipped. Programs nested deeper than the parser can recurse are rejected.

Layout: `_semantics` (gate tables, `_Program`, `_Fault`/`_Unsure`) is imported by
`_hot` and `_body` (layer 1), `_tokens` (layer 2) and `_full` (layer 3, which imports
openqasm3 only when it runs); `_verdict_cache` (the LRU of verdicts) and `_widths`
(`circuit_qubits`/`circuit_clbits`) sit beside this module, which chooses the layer.
Importing starts nothing; shared mutable state (the verdict cache, the hot path's
statement memo, the body regexes, ANTLR's error listener) is guarded by a `ForkSafeLock`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import QasmValidationError
from ._body import _body_accepts
from ._full import _verdict_slow
from ._hot import _hot_accepts
from ._semantics import _Fault, _Unsure, _Verdict
from ._tokens import _Checker
from ._verdict_cache import _cache_get, _cache_put, _key, _precheck
from ._widths import circuit_clbits, circuit_qubits

__all__ = ["check_batch", "check_circuit", "circuit_clbits", "circuit_qubits"]


def _fast_check(source: str) -> _Fault | _Unsure | None:
    """The fast path's answer: None (valid), a definite _Fault, or _Unsure."""
    if _hot_accepts(source):
        return None
    try:
        _Checker(source).run()
    except (_Fault, _Unsure) as exc:
        return exc
    except RecursionError:  # absurdly nested parentheses
        return _Unsure()
    return None


_SLOW = object()  # a marker: the verdict needs the full parser


def _quick(source: str, full: bool) -> _Verdict | object:
    """The verdict if it is cheap to get (checks, cache, fast path), else _SLOW."""
    if not full and _body_accepts(source):
        # The usual program is valid after one regex match (or found in the body path's
        # own memo of recent sources). It skips the verdict cache: hashing and storing
        # would cost every fresh program ~5 us.
        return None
    digest, verdict = _precheck(source)
    if digest is None:
        return verdict
    key = _key(digest, full)
    hit, verdict = _cache_get(key)
    if hit:
        return verdict
    if full:
        return _SLOW
    result = _fast_check(source)
    if isinstance(result, _Unsure):
        return _SLOW
    verdict = None if result is None else result.verdict(source)
    _cache_put(key, verdict)
    return verdict


def _verdict(source: str, full: bool) -> _Verdict:
    verdict = _quick(source, full)
    if verdict is _SLOW:
        verdict = _verdict_slow(source)
        digest = _precheck(source)[0]
        assert digest is not None
        _cache_put(_key(digest, full), verdict)
    assert verdict is None or isinstance(verdict, tuple)
    return verdict


def _raise(label: str, verdict: _Verdict) -> None:
    if verdict is not None:
        reason, line, column, token = verdict
        raise QasmValidationError(label, reason, line=line, column=column, token=token)


def check_circuit(label: str, source: str, *, full: bool = False) -> None:
    """Raise QasmValidationError (naming `label`) unless `source` is a valid circuit.

    With `full=True` the reference openqasm3 parser always runs (then the
    semantic checks on its AST), even where the fast path could decide alone.
    """
    _raise(label, _verdict(source, full))


def check_batch(items: Sequence[tuple[str, str]], *, full: bool = False) -> None:
    """Raise QasmValidationError for the first invalid circuit in batch order.

    Everything runs in the calling thread: no process is ever started, so a
    script without an ``if __name__ == "__main__":`` guard is safe.
    """
    # Verdicts are kept here, not only in the LRU cache: a batch larger than the
    # cache would evict its own first verdicts and be validated twice.
    known: dict[str, _Verdict] = {}
    for label, source in items:
        if source not in known:
            known[source] = _verdict(source, full)
        _raise(label, known[source])
