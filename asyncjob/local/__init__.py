"""A local job scheduler that speaks the cloud service's wire protocol.

`LocalScheduler` serves ``http://127.0.0.1:PORT/api/`` in-process (``async
with``), on a background thread (``run_in_thread()``) or from the command line
(``asyncjob serve``). It runs circuits with the ``"aer"`` executor (a real
qiskit-aer simulation; ``pip install 'asyncjob-quantum[local]'``) when that is
installed, else with the ``"sampler"`` executor (synthetic, deterministic
counts; no dependency), and injects the
network and job faults of a `FaultConfig` so clients can be tested against
them.
"""

from ._choice import aer_available
from ._executors import (
    AerExecutor,
    CircuitTask,
    Counts,
    ExecutionAborted,
    Executor,
    ExecutorUnavailableError,
    Expectations,
    SamplerExecutor,
    make_executor,
)
from ._faults import ENDPOINTS, FaultConfig, FaultEvent
from ._jobs import JobRecord, SchedulerStats
from ._scheduler import LocalScheduler
from ._state import API_PREFIX
from ._threaded import ThreadedScheduler

__all__ = [
    "API_PREFIX",
    "ENDPOINTS",
    "AerExecutor",
    "CircuitTask",
    "Counts",
    "ExecutionAborted",
    "Executor",
    "ExecutorUnavailableError",
    "Expectations",
    "FaultConfig",
    "FaultEvent",
    "JobRecord",
    "LocalScheduler",
    "SamplerExecutor",
    "SchedulerStats",
    "ThreadedScheduler",
    "aer_available",
    "make_executor",
]
