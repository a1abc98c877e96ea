"""Running the CLI with a pseudo-terminal as stdin, stdout and stderr."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable


def run_in_a_terminal(
    args: list[str],
    env: dict[str, str],
    answer: Callable[[bytes], bytes | None] = lambda output: None,
    timeout: float = 30,
) -> tuple[int, str]:
    """Run `python -m asyncjob ARGS` on a terminal; its exit status and everything it wrote.

    After each read, `answer(output so far)` may return bytes to type into the
    terminal (or act on the output, e.g. end the job being waited for).
    """
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncjob", *args], env=env, stdin=child, stdout=child, stderr=child
    )
    os.close(child)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            typed = answer(output)
            if typed:
                os.write(main, typed)
        elif proc.poll() is not None:
            break
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    os.close(main)
    return proc.returncode, output.decode()
