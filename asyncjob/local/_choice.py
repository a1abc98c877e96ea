"""Which executor a scheduler uses when asked for ``"auto"``, and whether its counts are real."""

from __future__ import annotations

import importlib.util

from ._executors import Executor, SamplerExecutor, make_executor

__all__ = ["aer_available", "choose_executor", "is_synthetic"]


def aer_available() -> bool:
    """True when qiskit and qiskit-aer can be imported (without importing them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("qiskit", "qiskit_aer"))


def choose_executor(spec: str | Executor) -> Executor:
    """An executor from its name or an instance; ``"auto"`` is aer when installed, else sampler."""
    if spec == "auto":
        spec = "aer" if aer_available() else "sampler"
    return make_executor(spec)


def is_synthetic(executor: Executor) -> bool:
    """True for an executor whose counts are made up rather than simulated."""
    return isinstance(executor, SamplerExecutor)
