"""The job commands of the `asyncjob` CLI: submit, status, wait, results, cancel, jobs, demo.

Configuration comes from flags, then the environment (`ASYNCJOB_BASE_URL`,
`ASYNCJOB_TOKEN`), then a TOML config file (`$ASYNCJOB_CONFIG`, default
`config.toml` in the user's config directory, e.g. `~/.config/asyncjob/` on
Linux; see `_cliconfig`). The token is read from a file, the environment or a
prompt, never from a flag value (which other users could see in the process
list) and never echoed.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._backend import JobBackend
from ._cli_jobs import add_jobs_command
from ._cliconfig import positive_int, settings
from ._display import Progress, format_results
from ._errors import (
    ConfigurationError,
    ConnectionFailedError,
    ExecutionCancelledError,
    RequestTimeoutError,
)
from ._models import ExecutionResult, JobStatus, Response
from ._outcome import failure_reason, synthetic_counts

__all__ = ["add_job_commands"]

EXIT_FAILED = 1
EXIT_JOB_NOT_COMPLETED = 3
EXIT_INTERRUPTED = 130
SYNTHETIC_NOTE = (
    "SYNTHETIC: these counts come from the local scheduler's 'sampler' executor, not a "
    "simulation; pip install 'asyncjob-quantum[local]' to simulate with qiskit-aer"
)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text}")
    return value


def add_job_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Register every job command on the CLI's subparsers."""
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument(
        "--base-url", help="scheduler URL, ending in /api/ (default: $ASYNCJOB_BASE_URL or config)"
    )
    conn.add_argument("--token-file", type=Path, help="read the API token from this file")
    conn.add_argument(
        "--token-prompt", action="store_true", help="ask for the token (input is not echoed)"
    )
    conn.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain http:// to a non-loopback host (the token travels unencrypted)",
    )
    conn.add_argument(
        "--journal",
        help="journal file, or 'off' (default: the user's data directory; "
        "none for a scheduler on this machine)",
    )
    conn.add_argument(
        "--polling-interval", type=_seconds, default=None, help="seconds between status polls"
    )
    parents = [common, conn]

    p = subparsers.add_parser("submit", parents=parents, help="submit QASM files as one job")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE.qasm")
    p.add_argument("--shots", type=positive_int, default=1000)
    p.add_argument("--tag", default="default")
    p.add_argument(
        "--wait", action="store_true", help="wait with live progress, then show results"
    )
    p.set_defaults(run=_submit)

    p = subparsers.add_parser("status", parents=parents, help="show a job's status")
    p.add_argument("job")
    p.set_defaults(run=_status)

    p = subparsers.add_parser("wait", parents=parents, help="wait for a job, with live progress")
    p.add_argument("job")
    p.set_defaults(run=_wait)

    p = subparsers.add_parser("results", parents=parents, help="show a completed job's results")
    p.add_argument("job")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="machine-readable JSON")
    form.add_argument("--table", action="store_true", help="readable table (the default)")
    p.add_argument(
        "--top", type=positive_int, default=16, metavar="N", help="outcomes shown per circuit"
    )
    p.set_defaults(run=_results)

    p = subparsers.add_parser("cancel", parents=parents, help="cancel a job")
    p.add_argument("job")
    p.set_defaults(run=_cancel)

    add_jobs_command(subparsers, common)

    p = subparsers.add_parser(
        "demo", parents=[common], help="run example circuits on an embedded local scheduler"
    )
    add_executor_flag(p)
    p.set_defaults(run=_demo)


def add_executor_flag(parser: argparse.ArgumentParser) -> None:
    """`--executor` of `serve` and `demo`: what the local scheduler runs circuits with."""
    parser.add_argument(
        "--executor",
        choices=("auto", "aer", "sampler"),
        default="auto",
        help="auto (the default): aer when qiskit-aer is installed, else sampler; "
        "aer: qiskit-aer simulation; sampler: SYNTHETIC deterministic counts",
    )


def _backend(args: argparse.Namespace) -> JobBackend:
    found = settings(args)
    options: dict[str, Any] = {
        "journal": found.journal,
        "allow_insecure_http": found.allow_insecure_http,
    }
    if args.polling_interval is not None:
        options["polling_interval"] = args.polling_interval
    return JobBackend(found.base_url, found.token, shots=getattr(args, "shots", 1000), **options)


# -- commands ---------------------------------------------------------------------


def _read_circuits(files: list[Path]) -> dict[str, str]:
    """Each file is one circuit labelled by its name; a file given twice is refused."""
    circuits: dict[str, str] = {}
    seen: set[Path] = set()
    for path in files:
        key = path.resolve()
        if key in seen:
            raise ConfigurationError(
                f"{path} is given more than once: each file is one circuit, labelled by its "
                "name, so give each file once (copy it under another name to run it twice)"
            )
        seen.add(key)
        label = path.stem if path.stem not in circuits else str(path)
        try:
            circuits[label] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read {path}: {exc}") from None
    return circuits


def _submit(args: argparse.Namespace) -> int:
    circuits = _read_circuits(args.files)
    with _backend(args) as backend:
        handle = backend.submit_circuits(circuits, tag=args.tag)
        print(handle.job_id, flush=True)
        if not args.wait:
            return 0
        # No event: a first Ctrl+C cancels the remote job too, as the backend does.
        status, final = _follow(backend, handle, cancellation_event=None)
        return _show_if_completed(backend, handle, status, final)


def _status(args: argparse.Namespace) -> int:
    final: list[Response] = []
    with _backend(args) as backend:
        status = backend.poll_job_status(_handle(args), verbose=False, on_complete=final.append)
    print(status.value)
    reason = failure_reason(final[-1]) if final and status is not JobStatus.COMPLETED else None
    if reason:
        print(f"reason: {reason}", file=sys.stderr)
    return 0


def _wait(args: argparse.Namespace) -> int:
    stop = threading.Event()
    with _backend(args) as backend, _sigint_sets(stop):
        try:
            status, final = _follow(backend, _handle(args), cancellation_event=stop)
        except ExecutionCancelledError:
            print(f"stopped waiting; job {args.job} goes on", file=sys.stderr)
            return EXIT_INTERRUPTED
    print(status.value)
    if status is JobStatus.COMPLETED:
        return 0
    reason = failure_reason(final)
    if reason:
        print(f"reason: {reason}", file=sys.stderr)
    return EXIT_JOB_NOT_COMPLETED


def _results(args: argparse.Namespace) -> int:
    handle = _handle(args)
    final: list[Response] = []
    with _backend(args) as backend:
        status = backend.poll_job_status(handle, verbose=False, on_complete=final.append)
        if status is not JobStatus.COMPLETED:
            return _no_results(args.job, status, final[-1] if final else None)
        result = backend.get_job_results(handle)
    synthetic = synthetic_counts(final[-1] if final else None)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        if synthetic:
            print(f"note: {SYNTHETIC_NOTE}", file=sys.stderr)
    else:
        print(_table(result, args.top, synthetic))
    return 0


def _no_results(job: str, status: JobStatus, response: Response | None) -> int:
    if status.is_terminal:
        reason = failure_reason(response)
        because = f" ({reason})" if reason else ""
        print(
            f"asyncjob: error: job {job} ended {status.value}{because}: it has no results",
            file=sys.stderr,
        )
        return EXIT_JOB_NOT_COMPLETED
    print(
        f"asyncjob: error: job {job} is not complete yet ({status.value}): "
        f"`asyncjob wait {job}` waits for it, then ask for its results again",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _cancel(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        response = backend.cancel_job(_handle(args))
    print("cancelled" if response.status_code != 409 else "already finished")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .local import LocalScheduler

    circuits = _demo_circuits()
    with (
        LocalScheduler(executor=args.executor, job_duration=(0.5, 1.5)).run_in_thread() as server,
        JobBackend(server.base_url, server.token, polling_interval=0.2, journal=False) as backend,
    ):
        name = server.scheduler.executor.name
        print(f"local scheduler ({name}) at {server.base_url}")
        if server.synthetic:
            print(
                "note: the 'sampler' executor makes up SYNTHETIC counts, not a simulation"
                + (
                    f"; qiskit-aer is not installed: {_install_local()}"
                    if args.executor == "auto"
                    else ""
                )
            )
        handle = backend.submit_circuits(circuits, tag="demo", shots=1000)
        print(f"submitted {len(circuits)} circuits as job {handle.job_id}")
        status, final = _follow(backend, handle, cancellation_event=None)
        return _show_if_completed(backend, handle, status, final)


# -- helpers ----------------------------------------------------------------------


def _handle(args: argparse.Namespace) -> ExecutionResult:
    return ExecutionResult(job_id=args.job)


def _follow(
    backend: JobBackend, handle: ExecutionResult, cancellation_event: threading.Event | None
) -> tuple[JobStatus, Response | None]:
    """Poll until terminal with live progress: the status and its response."""
    final: list[Response] = []
    job_id = handle.job_id or "?"
    with Progress(job_id, sys.stderr) as progress:
        try:
            status = backend.poll_job_status(
                handle,
                loop_until_complete=True,
                on_complete=final.append,
                verbose=False,
                progress_callback=progress,
                cancellation_event=cancellation_event,
            )
        except (ConnectionFailedError, RequestTimeoutError) as exc:
            # Say what the user asked for, not which endpoint happened to fail.
            if exc.reason is None:
                raise
            raise type(exc)(f"waiting for job {job_id}: {exc.reason}") from exc
        progress.finish(status.value)
    return status, final[-1] if final else None


def _show_if_completed(
    backend: JobBackend, handle: ExecutionResult, status: JobStatus, final: Response | None
) -> int:
    if status is not JobStatus.COMPLETED:
        reason = failure_reason(final)
        because = f": {reason}" if reason else ""
        print(f"job {handle.job_id} ended {status.value}{because}", file=sys.stderr)
        return EXIT_JOB_NOT_COMPLETED
    print(_table(backend.get_job_results(handle), 16, synthetic_counts(final)))
    return 0


def _table(result: ExecutionResult, top: int, synthetic: bool) -> str:
    table = format_results(result.results or [], top=top, synthetic=synthetic)
    return f"{table}\n\n{SYNTHETIC_NOTE}" if synthetic else table


@contextmanager
def _sigint_sets(event: threading.Event) -> Iterator[None]:
    """While inside, Ctrl+C sets `event` instead of raising KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, lambda *_: event.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _install_local() -> str:
    """How to add the `local` extra: in a source checkout, the editable install of it."""
    if (Path(__file__).resolve().parent.parent / "pyproject.toml").is_file():
        return "pip install -e '.[local]' (in the clone)"
    return "pip install 'asyncjob-quantum[local]'"


def _demo_circuits() -> dict[str, str]:
    """The example circuits: Bell, GHZ and a small rotation sweep."""
    folder = Path(__file__).resolve().parent.parent / "examples" / "circuits"
    if not folder.is_dir():
        folder = Path(__file__).resolve().parent / "_examples"
    circuits = {
        "bell": (folder / "bell.qasm").read_text(),
        "ghz4": (folder / "ghz4.qasm").read_text(),
    }
    template = (folder / "rotation.qasm.template").read_text()
    for step in range(5):
        theta = step * math.pi / 4
        circuits[f"ry({step}pi/4)"] = template.replace("{theta}", f"{theta:.6f}")
    return circuits
