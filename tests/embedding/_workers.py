"""Worker functions of the embedding tests: importable, so that spawned processes,
process pools and Dask workers can run them by reference."""

from __future__ import annotations

from asyncjob import JobBackend

SHOTS = 200

BACKEND: JobBackend | None = None
"""A module-global backend, set in the parent before forking (the usual pool pattern)."""


def circuit(index: int) -> str:
    """The circuit of job `index`: distinct text, so the sampler gives each its own counts."""
    return (
        'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
        f"rx({index / 10}) q[0];\ncx q[0],q[1];\nmeasure q -> c;\n"
    )


def label(index: int) -> str:
    return f"job{index}"


def run_job(backend: JobBackend, index: int) -> tuple[int, dict[str, int]]:
    """Run job `index` on `backend`, a pickled copy (several tasks may share one copy;
    it is closed when it is garbage-collected)."""
    return _run(backend, index)


def run_with_global(index: int) -> tuple[int, dict[str, int]]:
    """Run job `index` on the module-global backend inherited from the parent."""
    assert BACKEND is not None
    return _run(BACKEND, index)


def fresh_backend_job(base_url: str, token: str, index: int) -> tuple[int, dict[str, int]]:
    """Run job `index` on a backend created here, in the child."""
    with JobBackend(base_url, token, shots=SHOTS, polling_interval=0.01) as backend:
        return _run(backend, index)


def _run(backend: JobBackend, index: int) -> tuple[int, dict[str, int]]:
    result = backend.run({label(index): circuit(index)})
    assert result.results is not None
    (entry,) = result.results
    assert entry["label"] == label(index)
    return index, dict(entry["results"])


def gate_circuits(count: int, gate: str = "g") -> dict[str, str]:
    """OpenQASM 3 circuits that define a gate: only the full parser can validate them."""
    header = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
    return {
        f"g{i}": f"{header}gate {gate}{i} a {{ h a; }}\nqubit q;\nbit c;\n{gate}{i} q;\n"
        "c = measure q;\n"
        for i in range(count)
    }


def fresh_backend_large_batch(base_url: str, token: str) -> int:
    """Run a batch of 70 full-parser circuits on a backend created here; its result count."""
    with JobBackend(base_url, token, polling_interval=0.01) as backend:
        result = backend.run(gate_circuits(70, "child"))  # not in the parent's cache
    assert result.results is not None
    return len(result.results)
