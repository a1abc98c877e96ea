"""Fixtures for the divi tests: a local scheduler simulating with qiskit-aer, and H2.

Every test here runs real qoro-divi programs against a real `LocalScheduler`
on 127.0.0.1. Skipped when qoro-divi or qiskit-aer is not installed (the
`test` extra installs both).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("divi")
pytest.importorskip("qiskit_aer")

from asyncjob.divi import DiviBackend
from asyncjob.local import LocalScheduler, ThreadedScheduler

from ._h2 import H2

__all__ = ["H2", "aer_scheduler", "divi_backend"]


@pytest.fixture
def aer_scheduler() -> Iterator[ThreadedScheduler]:
    """A local scheduler running circuits with qiskit-aer."""
    with LocalScheduler(executor="aer").run_in_thread() as threaded:
        yield threaded


def divi_backend(threaded: ThreadedScheduler, **options: Any) -> DiviBackend:
    """A `DiviBackend` for `threaded`, polling often, without a journal."""
    options.setdefault("shots", 4000)
    return DiviBackend(
        threaded.base_url, threaded.token, journal=False, polling_interval=0.02, **options
    )
