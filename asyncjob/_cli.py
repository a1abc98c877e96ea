"""The ``asyncjob`` command line: one subcommand per function.

``asyncjob serve`` runs the local scheduler until Ctrl+C or SIGTERM. Its first
line of output is the base URL; when no ``--token`` is given (loopback only) a
random one is generated and printed on the second line as ``token: ...`` -
acceptable for a development server on your own machine, never for a shared one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._commands import add_executor_flag, add_job_commands
from ._errors import AsyncJobError, ConfigurationError, ExecutionCancelledError

if TYPE_CHECKING:
    from .local import LocalScheduler

__all__ = ["build_parser", "main"]


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction within [0, 1], got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text}")
    return value


def _duration(text: str) -> float | tuple[float, float]:
    """``S`` or ``MIN,MAX`` seconds."""
    if "," in text:
        low, _, high = text.partition(",")
        pair = (_seconds(low), _seconds(high))
        if pair[0] > pair[1]:
            raise argparse.ArgumentTypeError(f"MIN must not exceed MAX in {text}")
        return pair
    return _seconds(text)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, got {text}")
    return value


def _names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


_READERS: dict[str, tuple[Callable[[str], object], str]] = {
    "fraction": (_fraction, "F"),
    "seconds": (_seconds, "S"),
    "duration": (_duration, "S|MIN,MAX"),
    "count": (_count, "N"),
    "names": (_names, "NAME,..."),
}
"""How a `FaultConfig` field's flag is read, by the `kind` in its metadata, and its metavar."""


def _fault_fields() -> list[tuple[attrs.Attribute[Any], dict[str, Any], Any]]:
    """The `FaultConfig` fields that have a flag: (field, its cli metadata, its type)."""
    from .local import FaultConfig

    hints = typing.get_type_hints(FaultConfig)
    return [
        (field, field.metadata["cli"], hints[field.name])
        for field in attrs.fields(FaultConfig)
        if "cli" in field.metadata
    ]


def _add_fault_flags(group: argparse._ArgumentGroup) -> None:
    """One flag per `FaultConfig` field, generated from the field (name, type, default, help)."""
    for field, cli, kind in _fault_fields():
        flag = cli["flag"] or "--" + field.name.replace("_", "-")
        options: dict[str, Any] = {"dest": field.name, "default": field.default}
        if typing.get_origin(kind) is typing.Literal:
            options["choices"] = typing.get_args(kind)
        else:
            options["type"], options["metavar"] = _READERS[cli["kind"]]
        default = "" if field.default in (None, 0.0) else f" (default {field.default})"
        group.add_argument(flag, help=cli["help"] + default, **options)


def _fault_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `FaultConfig` keyword arguments given by the generated flags."""
    return {field.name: getattr(args, field.name) for field, _, _ in _fault_fields()}


def _add_serve(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = subparsers.add_parser(
        "serve",
        parents=[common],
        help="run the local scheduler",
        description=(
            "Serve the scheduler wire protocol on HOST:PORT under /api/. Prints the base URL "
            "first (and a generated token second when --token is omitted), then serves until "
            "Ctrl+C or SIGTERM."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free)")
    parser.add_argument("--token", help="bearer token clients must send (default: generated)")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding a non-loopback address (requires --token)",
    )
    add_executor_flag(parser)
    parser.add_argument(
        "--job-duration",
        type=_duration,
        default=0.0,
        metavar="S|MIN,MAX",
        help="seconds each job takes, or a range drawn per job (default 0)",
    )
    parser.add_argument("--max-concurrent-jobs", type=int, default=4, metavar="N")
    parser.add_argument(
        "--no-watch",
        action="store_true",
        help="serve without the jobs/watch/ long-poll extension, like a plain server",
    )
    parser.add_argument(
        "--decode-workers",
        type=int,
        default=0,
        metavar="N",
        help="unpack and check uploaded circuits in N worker processes (default 0: a thread)",
    )
    parser.add_argument(
        "--seed", type=int, help="seed of the job and fault RNGs (replayable runs)"
    )
    _add_fault_flags(parser.add_argument_group("fault injection (all off by default)"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    parser.set_defaults(run=_serve)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    from ._version import DISTRIBUTION, __version__

    parser = argparse.ArgumentParser(
        prog="asyncjob", description="Run batches of quantum circuits as remote jobs."
    )
    parser.add_argument("--version", action="version", version=f"{DISTRIBUTION} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="show a traceback on errors (and debug logs)"
    )
    _add_serve(subparsers, common)
    add_job_commands(subparsers, common)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from ._wire import is_loopback
    from .local import FaultConfig, LocalScheduler

    if not is_loopback(args.host):
        if not args.allow_remote:
            print(
                f"asyncjob serve: refusing to bind non-loopback host {args.host!r} "
                "without --allow-remote",
                file=sys.stderr,
            )
            return 2
        if not args.token:
            print("asyncjob serve: --allow-remote requires an explicit --token", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        faults = FaultConfig(seed=args.seed, **_fault_options(args))
        scheduler = LocalScheduler(
            token=args.token,
            host=args.host,
            port=args.port,
            executor=args.executor,
            faults=faults,
            job_duration=args.job_duration,
            max_concurrent_jobs=args.max_concurrent_jobs,
            seed=args.seed,
            allow_remote=args.allow_remote,
            watch=not args.no_watch,
            decode_workers=args.decode_workers,
            log_requests=args.verbose,
        )
    except (ValueError, ImportError) as exc:
        print(f"asyncjob serve: {exc}", file=sys.stderr)
        return 2
    if args.verbose:
        logging.getLogger("aiohttp.access").setLevel(logging.INFO)
    _banner(scheduler)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows
                loop.add_signal_handler(signum, stop.set)
        async with scheduler:
            print(scheduler.base_url, flush=True)
            if not args.token:
                print(f"token: {scheduler.token}", flush=True)
            await stop.wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:  # pragma: no cover - only where signal handlers are unavailable
        pass
    except OSError as exc:
        print(f"asyncjob serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _banner(scheduler: LocalScheduler) -> None:
    """Say on stderr what runs the circuits; stdout stays the URL (and token) alone."""
    if scheduler.synthetic:
        print(
            "asyncjob serve: executor 'sampler': counts are SYNTHETIC, not a simulation "
            "(pip install 'asyncjob-quantum[local]' for qiskit-aer)",
            file=sys.stderr,
        )
    else:
        print(f"asyncjob serve: executor {scheduler.executor.name!r}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asyncjob`` command; returns the exit status.

    Errors are one line on stderr (exit 1, or 2 for configuration); `--debug`
    shows the traceback instead.
    """
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        return run(args)
    if args.command != "serve":  # serve sets up its own log format
        # The library's warnings, one line each, told apart from the error line.
        logging.basicConfig(
            level=logging.WARNING, format="asyncjob: warning: %(message)s", stream=sys.stderr
        )
    try:
        return run(args)
    except KeyboardInterrupt:
        print("asyncjob: interrupted", file=sys.stderr)
        return 130
    except ExecutionCancelledError as exc:
        print(f"asyncjob: {exc}", file=sys.stderr)
        return 130
    except ConfigurationError as exc:
        print(f"asyncjob: error: {exc}", file=sys.stderr)
        return 2
    except (AsyncJobError, ValueError, TypeError, LookupError, OSError, sqlite3.Error) as exc:
        print(f"asyncjob: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
