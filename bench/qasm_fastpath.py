"""Compare `check_batch` CPU time on the scale bench's circuits: this tree vs an older copy.

Loads the `asyncjob` package of another checkout (e.g. one made with
``git archive <commit> | tar -x -C DIR``) under another module name and validates
the same fresh batches with both, alternating old and new, so that other load on
the machine hits both alike. Process CPU time per circuit; every batch is new to
both verdict caches.

    python bench/qasm_fastpath.py --base DIR [--circuits 1000,10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

from common import make_batch

from asyncjob import _qasm

Check = Callable[[Sequence[tuple[str, str]]], None]


def load_base(directory: Path) -> ModuleType:
    """The `asyncjob` package under `directory`, imported as `asyncjob_base`."""
    init = directory / "asyncjob" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "asyncjob_base", init, submodule_search_locations=[str(init.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["asyncjob_base"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("asyncjob_base._qasm")


def cpu_us(check: Check, items: list[tuple[str, str]]) -> float:
    start = time.process_time()
    check(items)
    return (time.process_time() - start) / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--circuits", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    checks: dict[str, Check] = {"old": load_base(args.base).check_batch, "new": _qasm.check_batch}
    seed = 100
    for n in (int(x) for x in args.circuits.split(",")):
        figures: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.rounds):
            seed += 1
            items = list(make_batch(n, seed).items())
            for name, check in checks.items():
                figures[name].append(cpu_us(check, items))
        old, new = (statistics.median(figures[k]) for k in ("old", "new"))
        print(
            f"check_batch, {n} circuits: old {old:.1f} us, new {new:.1f} us CPU per circuit "
            f"({old / new:.2f}x; medians of {args.rounds})"
        )


if __name__ == "__main__":
    main()
