"""Run qoro-divi programs on asyncjob: `DiviBackend`, a divi `CircuitRunner` over a `JobBackend`.

```python
from asyncjob.divi import DiviBackend

backend = DiviBackend(base_url, token, shots=2000)
vqe = VQE(problem, backend=backend, optimizer=...)   # the one changed line
vqe.run()
```
It takes what divi's pipeline hands a backend (`CircuitPayload` sequences,
bound or parametric; label -> QASM mappings; qiskit circuits; divi's
`JobType`), returns divi's `ExecutionResult` (`job_id`, `backend_jobs`,
`run_time`), and raises divi's exceptions: a job ending FAILED, CANCELLED,
INSUFFICIENT_CREDITS or TIMED_OUT while waiting, and a set cancellation event
or Ctrl+C. Needs the `divi` extra (`pip install "asyncjob-quantum[divi]"`); the rest of
asyncjob never imports divi.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NoReturn

try:
    from divi.backends import CircuitRunner, normalise_circuit_batch
    from divi.backends import ExecutionResult as DiviExecutionResult
    from divi.backends import InsufficientCreditsError as _DiviInsufficientCredits
    from divi.backends import JobCancelledError as _DiviJobCancelled
    from divi.backends import JobFailedError as _DiviJobFailed
    from divi.backends import JobStatus as DiviJobStatus
    from divi.backends import JobTimedOutError as _DiviJobTimedOut
    from divi.backends import QoroJobError as _DiviJobError
    from divi.circuits import CircuitPayload
    from divi.exceptions import ExecutionCancelledError as _DiviCancelled
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'asyncjob.divi needs qoro-divi; install it with: pip install "asyncjob-quantum[divi]"'
    ) from exc

from ._backend import JobBackend
from ._batch import encode_circuit
from ._errors import (
    ExecutionCancelledError,
    InvalidInputError,
    InvalidInputTypeError,
    JobFailedError,
)
from ._ham_padding import pad_ham_ops
from ._models import JobStatus, Response
from ._outcome import failure_reason
from ._parametric import ParametricCircuit, bind_template
from ._qasm import circuit_qubits

__all__ = [
    "DiviBackend",
    "DiviExecutionCancelledError",
    "DiviInsufficientCreditsError",
    "DiviJobCancelledError",
    "DiviJobError",
    "DiviJobFailedError",
    "DiviJobTimedOutError",
]


class DiviExecutionCancelledError(ExecutionCancelledError, _DiviCancelled):  # type: ignore[misc]
    """A cancellation event or Ctrl+C stopped the call: divi's `ExecutionCancelledError` too."""


class DiviJobError(JobFailedError, _DiviJobError):  # type: ignore[misc]
    """A job ended other than COMPLETED while waiting: asyncjob's `JobFailedError` and
    divi's `QoroJobError`; the subclasses are divi's class for each terminal status.

    `reason` is the scheduler's explanation (None when it gave none), as on every
    `JobFailedError`; divi's phrase for the status (its class attribute
    `reason`, e.g. "failed") is `status_word`.
    """

    status: Any

    def __init__(self, job_id: str, reason: str | None = None) -> None:
        self.job_id = job_id
        self.reason: str | None = reason
        because = f": {reason}" if reason else ""
        Exception.__init__(self, f"job {job_id} {self.status_word} ({self.status}){because}")

    @property
    def status_word(self) -> str:
        """divi's phrase for the terminal status, e.g. "failed" (divi's class attribute)."""
        for cls in type(self).__mro__:  # the instance's `reason` shadows divi's
            if "reason" in cls.__dict__:
                return str(cls.__dict__["reason"])
        return "did not complete successfully"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.job_id, self.reason))


class DiviJobFailedError(DiviJobError, _DiviJobFailed):  # type: ignore[misc]
    """The job ended FAILED."""


class DiviJobCancelledError(DiviJobError, _DiviJobCancelled):  # type: ignore[misc]
    """The job ended CANCELLED without a cancellation by this caller."""


class DiviInsufficientCreditsError(DiviJobError, _DiviInsufficientCredits):  # type: ignore[misc]
    """The job could not run: the account has insufficient credits."""


class DiviJobTimedOutError(DiviJobError, _DiviJobTimedOut):  # type: ignore[misc]
    """The job exceeded its server-side deadline."""


_TERMINAL_ERRORS: dict[JobStatus, type[DiviJobError]] = {
    JobStatus.FAILED: DiviJobFailedError,
    JobStatus.CANCELLED: DiviJobCancelledError,
    JobStatus.INSUFFICIENT_CREDITS: DiviInsufficientCreditsError,
    JobStatus.TIMED_OUT: DiviJobTimedOutError,
}


class DiviBackend(CircuitRunner):  # type: ignore[misc]
    """A divi `CircuitRunner` and `AsyncJobBackend` running every submission as an asyncjob job.

    Built from the arguments of `JobBackend` (`base_url`, `token`, `shots`,
    options), or around an existing one with `from_backend`. `supports_expval`
    (default True) tells divi to send `ham_ops` expectation-value jobs.
    `parametric` sets `resolves_parameters`: with True, divi hands over one
    template per circuit with its parameter matrix, sent as a `ParametricCircuit`
    (the server binds each row) instead of one bound circuit per row; with
    "auto" (the default) templates are sent only when the bound batch would not
    fit in one chunk (`Limits.chunk_bytes`); below that the rows are bound here
    (with the server's substitution) and sent as one chunk, a round trip less
    than a chunk per template. With False divi binds every circuit itself. The
    wire protocol carries no seed, so `set_seed` only records it (`seed`).
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        shots: int = 1000,
        supports_expval: bool = True,
        parametric: bool | Literal["auto"] = "auto",
        track_depth: bool = False,
        **options: Any,
    ) -> None:
        self._init(JobBackend(base_url, token, shots=shots, **options), True)
        self._configure(supports_expval, parametric, track_depth)

    def _init(self, backend: JobBackend, owned: bool) -> None:
        self._backend = backend
        self._owned = owned
        self.seed: int | None = None

    def _configure(
        self, supports_expval: bool, parametric: bool | Literal["auto"], track_depth: bool
    ) -> None:
        if parametric not in (True, False, "auto"):
            raise InvalidInputError(
                f'parametric must be True, False or "auto", got {parametric!r}'
            )
        super().__init__(shots=self._backend.shots, track_depth=track_depth)
        self._supports_expval = bool(supports_expval)
        self._parametric: bool | Literal["auto"] = parametric

    @classmethod
    def from_backend(
        cls,
        backend: JobBackend,
        *,
        supports_expval: bool = True,
        parametric: bool | Literal["auto"] = "auto",
        track_depth: bool = False,
    ) -> DiviBackend:
        """A divi backend over an existing `JobBackend` (which `close()` leaves open)."""
        if not isinstance(backend, JobBackend):
            raise InvalidInputTypeError(
                f"from_backend needs a JobBackend, got {type(backend).__name__}"
            )
        runner = cls.__new__(cls)
        runner._init(backend, False)
        runner._configure(supports_expval, parametric, track_depth)
        return runner

    @property
    def job_backend(self) -> JobBackend:
        """The `JobBackend` every call goes through."""
        return self._backend

    def __repr__(self) -> str:
        return f"DiviBackend({self._backend!r})"

    def __enter__(self) -> DiviBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the `JobBackend` if this object built it (not one given to `from_backend`)."""
        if self._owned:
            self._backend.close()

    # -- divi's CircuitRunner ---------------------------------------------

    @property
    def supports_expval(self) -> bool:
        """Whether divi may send `ham_ops` (expectation-value jobs)."""
        return self._supports_expval

    @property
    def is_async(self) -> bool:
        """Always True: submissions return a job handle to poll."""
        return True

    @property
    def resolves_parameters(self) -> bool:
        """Whether divi may hand over parametric payloads (bound by the server, or here)."""
        return self._parametric is not False

    def set_seed(self, seed: int) -> None:
        """Record `seed`; the wire protocol has no field to send it in."""
        self.seed = seed

    # -- divi's AsyncJobBackend -------------------------------------------

    def submit_circuits(
        self,
        payloads: Any,
        *,
        cancellation_event: threading.Event | None = None,
        **kwargs: Any,
    ) -> Any:
        """Validate and submit a batch; return divi's `ExecutionResult` with the job id.

        `backend_jobs` is the number of chunks the batch was sent in. A set
        `cancellation_event` cancels a job already created and raises
        `DiviExecutionCancelledError`. `ham_ops` terms shorter than their
        circuits are padded onto its first qubits, with a warning, as divi's
        own runners do (results are keyed by the padded terms).
        """
        batch, depths = self._batch(payloads)
        if isinstance(kwargs.get("ham_ops"), str):
            kwargs["ham_ops"], example = pad_ham_ops(
                kwargs["ham_ops"], kwargs.get("circuit_ham_map"), _widths(batch)
            )
            if example is not None:
                warnings.warn(
                    "ham_ops terms shorter than their circuit are padded onto its first "
                    f"qubits, e.g. {example[0]!r} -> {example[1]!r}",
                    UserWarning,
                    stacklevel=2,
                )
        if self.track_depth:
            self._depth_history.append(depths())
        try:
            handle = self._backend.submit_circuits(
                batch, cancellation_event=cancellation_event, **kwargs
            )
        except ExecutionCancelledError as exc:
            _raise_cancelled(exc)
        return DiviExecutionResult(job_id=handle.job_id, backend_jobs=handle.backend_jobs)

    def poll_job_status(
        self,
        execution_result: Any,
        loop_until_complete: bool = False,
        verbose: bool = True,
        progress_callback: Callable[[int, str], None] | None = None,
        cancellation_event: threading.Event | None = None,
        on_complete: Callable[[Response], None] | None = None,
    ) -> Any:
        """One status (divi's `JobStatus`), or wait: COMPLETED, or divi's error for the status.

        A set `cancellation_event` ends the wait (divi's pipeline then cancels
        the job); without one, a first Ctrl+C cancels the job too. Both raise
        `DiviExecutionCancelledError`.
        """
        job_id = _job_id(execution_result)
        final: list[Response] = []

        def completed(response: Response) -> None:
            final.append(response)
            if on_complete is not None:
                on_complete(response)

        try:
            status = self._backend.poll_job_status(
                job_id,
                loop_until_complete,
                completed,
                verbose,
                progress_callback,
                cancellation_event,
            )
        except ExecutionCancelledError as exc:
            _raise_cancelled(exc)
        if loop_until_complete and status in _TERMINAL_ERRORS:
            raise _TERMINAL_ERRORS[status](job_id, failure_reason(final[-1] if final else None))
        return DiviJobStatus(status.value)

    def get_job_results(self, execution_result: Any) -> Any:
        """The results of a COMPLETED job, in submission order, with its `run_time`."""
        fetched = self._backend.get_job_results(_job_id(execution_result))
        results = list(fetched.results or [])
        if isinstance(execution_result, DiviExecutionResult):
            return execution_result.with_results(results, run_time=fetched.run_time)
        return DiviExecutionResult(
            results=results, job_id=fetched.job_id, run_time=fetched.run_time
        )

    def cancel_job(self, execution_result: Any) -> Response:
        """Cancel the job; one already terminal is not an error (idempotent)."""
        return self._backend.cancel_job(_job_id(execution_result))

    # -- payloads -----------------------------------------------------------

    def _chunk_bytes(self) -> int:
        return self._backend.config.limits.chunk_bytes

    def _batch(self, payloads: Any) -> tuple[Any, Callable[[], list[int]]]:
        """What to give `JobBackend.submit_circuits`, and the depth of each circuit, lazily."""
        if isinstance(payloads, Sequence) and not isinstance(payloads, str | bytes):
            items = list(payloads)
            if items and all(isinstance(p, CircuitPayload) for p in items):
                if all(not p.parameters for p in items):
                    bound = {label: p.circuit for p in items for label, _ in p.parameter_sets}
                    return bound, lambda: _depths(bound.values())
                if self._parametric is False:
                    raise InvalidInputError(
                        "these payloads carry free parameters, but this DiviBackend was made "
                        "with parametric=False; bind them first or use parametric=True"
                    )
                bind = self._parametric == "auto" and _bound_size(items) <= self._chunk_bytes()
                pieces = [piece for p in items for piece in _pieces(p, bind=bind)]
                return pieces, lambda: _piece_depths(pieces)
        if isinstance(payloads, Mapping | Sequence) and not isinstance(payloads, str | bytes):
            bound = dict(normalise_circuit_batch(payloads))
            return bound, lambda: _depths(bound.values())
        raise InvalidInputTypeError(
            "submit_circuits takes CircuitPayloads, a mapping label -> circuit or a sequence "
            f"of circuits, not {type(payloads).__name__}"
        )


def _bound_size(payloads: Sequence[Any]) -> int:
    """About how many bytes the payloads take bound and compressed: each row as its first."""
    size = 0
    for payload in payloads:
        label, values = payload.parameter_sets[0]
        source = bind_template(payload.circuit, payload.parameter_names, values)
        size += (len(encode_circuit(source)) + len(label) + 6) * len(payload.parameter_sets)
    return size


def _pieces(payload: Any, *, bind: bool) -> list[ParametricCircuit | tuple[str, str]]:
    """A payload as a `ParametricCircuit`, or as its rows bound (with the server's binding)."""
    if not payload.parameters:
        return [(label, payload.circuit) for label, _ in payload.parameter_sets]
    circuit = ParametricCircuit(payload.circuit, payload.parameter_names, payload.parameter_sets)
    return list(circuit.bound().items()) if bind else [circuit]


def _widths(batch: Any) -> list[int]:
    """The qubit count of each circuit of a batch `_batch` made, in submission order."""
    if isinstance(batch, Mapping):
        return [circuit_qubits(source) for source in batch.values()]
    widths: list[int] = []
    for piece in batch:
        if isinstance(piece, ParametricCircuit):
            widths += [circuit_qubits(piece.template)] * len(piece.parameter_sets)
        else:
            widths.append(circuit_qubits(piece[1]))
    return widths


def _piece_depths(pieces: Sequence[ParametricCircuit | tuple[str, str]]) -> list[int]:
    depths: list[int] = []
    for piece in pieces:
        if isinstance(piece, ParametricCircuit):  # every row has the template's structure
            depths += _depths([piece.bind(0)]) * len(piece.parameter_sets)
        else:
            depths += _depths([piece[1]])
    return depths


def _depths(sources: Any) -> list[int]:
    from qiskit import QuantumCircuit

    return [int(QuantumCircuit.from_qasm_str(source).depth()) for source in sources]


def _job_id(execution_result: Any) -> str:
    job_id = execution_result if isinstance(execution_result, str) else None
    job_id = job_id or getattr(execution_result, "job_id", None)
    if not isinstance(job_id, str) or not job_id:
        raise InvalidInputError(
            "this ExecutionResult carries no job_id: it is not a remote job handle"
        )
    return job_id


def _raise_cancelled(exc: ExecutionCancelledError) -> NoReturn:
    raise DiviExecutionCancelledError(str(exc)) from exc
