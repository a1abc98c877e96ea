"""Terminal output of the command line: live job progress and histogram tables."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from ._errors import InvalidInputError

__all__ = ["Progress", "format_results"]

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_BLOCKS = " ▏▎▍▌▋▊▉█"


class Progress:
    """Live progress of one job: a redrawn spinner line on a terminal, plain lines otherwise.

    Use it as the `progress_callback` of `poll_job_status` inside a `with` block;
    leaving the block clears the spinner line so later output starts clean.
    """

    def __init__(self, job_id: str, stream: TextIO, *, tty: bool | None = None) -> None:
        self.job_id = job_id
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.status = "SUBMITTED"
        self.polls = 0
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.tty:
            self._ticker = threading.Thread(
                target=self._tick, name="asyncjob-progress", daemon=True
            )
            self._ticker.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            with self._lock:
                self.stream.write("\r\x1b[K")
                self.stream.flush()

    def __call__(self, poll: int, status: str) -> None:
        """The progress callback: record the poll; in plain mode print status changes."""
        with self._lock:
            changed = status != self.status
            self.polls, self.status = poll, status
            if not self.tty and changed:
                self.stream.write(f"{self._line()}\n")
                self.stream.flush()

    def finish(self, status: str) -> None:
        """Record the final status (terminal polls do not reach the callback)."""
        with self._lock:
            self.status = status
            self.polls += 1
            if not self.tty:
                self.stream.write(f"{self._line()}\n")
                self.stream.flush()

    def _line(self) -> str:
        elapsed = time.monotonic() - self._start
        return f"job {self.job_id}  {self.status:<10} {elapsed:6.1f}s  polls {self.polls}"

    def _tick(self) -> None:
        frame = 0
        while not self._stop.wait(0.1):
            with self._lock:
                self.stream.write(f"\r\x1b[K{_SPINNER[frame % len(_SPINNER)]} {self._line()}")
                self.stream.flush()
            frame += 1


def format_results(
    results: Sequence[Mapping[str, Any]],
    *,
    top: int = 16,
    width: int = 40,
    synthetic: bool = False,
) -> str:
    """Histograms (or expectation values) as a readable table, one block per circuit.

    `top` (>= 1) outcomes are shown per circuit; with `synthetic`, every block
    says that its numbers are made up, not physics.
    """
    if top < 1:
        raise InvalidInputError(f"top must be >= 1, got {top}")
    mark = ", SYNTHETIC" if synthetic else ""
    blocks = []
    for entry in results:
        label, values = entry["label"], entry["results"]
        if (
            isinstance(values, Mapping)
            and values
            and all(isinstance(v, int) and not isinstance(v, bool) for v in values.values())
        ):
            blocks.append(_histogram_block(label, values, top, width, mark))
        elif isinstance(values, Mapping):
            lines = [f"{label}{f'  ({mark[2:]})' if mark else ''}"]
            lines += [f"  {k}  {_number(v)}" for k, v in values.items()]
            blocks.append("\n".join(lines))
        else:
            blocks.append(f"{label}\n  {values!r}")
    return "\n\n".join(blocks)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _histogram_block(
    label: str, counts: Mapping[str, int], top: int, width: int, mark: str = ""
) -> str:
    shots = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    peak = ranked[0][1]
    key_width = max(len(k) for k, _ in ranked[:top])
    lines = [f"{label}  ({_plural(shots, 'shot')}, {_plural(len(counts), 'outcome')}{mark})"]
    for outcome, count in ranked[:top]:
        lines.append(
            f"  {outcome:<{key_width}}  {count:>7}  {100 * count / shots:5.1f}%  "
            f"{_bar(count / peak, width)}"
        )
    if len(ranked) > top:
        rest = sum(c for _, c in ranked[top:])
        more = len(ranked) - top
        lines.append(f"  ... {_plural(more, 'more outcome')}, {_plural(rest, 'shot')}")
    return "\n".join(lines)


def _bar(fraction: float, width: int) -> str:
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[part] if part else "")


def _number(value: object) -> str:
    return f"{value:+.4f}" if isinstance(value, float) else str(value)
