"""Every code block of the README is run or checked: Python, shell commands and their output."""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import anyio
import pytest

from asyncjob import AsyncJobClient
from asyncjob._cli import build_parser
from asyncjob.local import LocalScheduler

from .conftest import BELL

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language: str, text: str = README) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == language]


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else None]


def distribution() -> str:
    name: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    return name


async def test_every_python_block_runs_in_order() -> None:
    """One namespace, top-level `await` allowed, against a local scheduler.

    Blocks without a top-level `await` run in a worker thread, as the blocking
    code (and `anyio.run`) they are.
    """
    python = blocks("python")
    assert len(python) >= 4
    with LocalScheduler(executor="sampler", job_duration=0.05).run_in_thread() as server:
        async with AsyncJobClient(server.base_url, server.token, polling_interval=0.05) as client:
            handles = [await client.submit_circuits({"bell": BELL})]
            namespace: dict[str, object] = {
                "__name__": "readme",
                "base_url": server.base_url,
                "token": server.token,
                "client": client,
                "handles": handles,
            }
            for number, block in enumerate(python):
                code = compile(
                    block,
                    f"README.md block {number}",
                    "exec",
                    flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                )
                if code.co_flags & inspect.CO_COROUTINE:  # top-level await: run it here
                    await eval(code, namespace)  # the README's own code
                else:  # plain (blocking) code, maybe with its own anyio.run: off the loop
                    await anyio.to_thread.run_sync(eval, code, namespace)
                if number == 0:  # the async example defines main(); run it as the user would
                    await namespace["main"](server.base_url, server.token)  # type: ignore[operator]


def test_install_section_names_the_distribution_we_publish() -> None:
    name = distribution()
    assert name != "asyncjob", "that name belongs to another project on the package index"
    (install,) = blocks("bash", section("Install"))
    commands = [line.split("#")[0].split() for line in install.splitlines() if line.strip()]
    assert commands and all(command[:2] == ["pip", "install"] for command in commands)
    assert {command[2].strip("'\"").split("[")[0] for command in commands} == {name}


def test_extras_that_name_the_package_use_its_distribution_name() -> None:
    """`asyncjob[...]` inside pyproject would install the unrelated project of that name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [r for extra in project["optional-dependencies"].values() for r in extra]
    requirements += project["dependencies"]
    names = {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in requirements}
    assert "asyncjob" not in names
    assert all(not n.startswith("asyncjob") or n == distribution() for n in names)


def test_every_install_hint_names_the_distribution() -> None:
    """In the package's messages, the examples, the README and the docs."""
    name = distribution()
    hints = []
    paths = [*(ROOT / "asyncjob").rglob("*.py"), *(ROOT / "examples").glob("*.py")]
    paths += [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    for path in paths:
        hints += re.findall(r"pip install ['\"]?([\w.-]+)\[", path.read_text())
    ours = {hint for hint in hints if hint.startswith("asyncjob")}
    assert ours == {name}, "an install hint names another distribution than ours"


def test_the_two_commands_are_what_ci_runs() -> None:
    (two,) = blocks("bash", section("Two commands"))
    lines = [line.split("#")[0].strip() for line in two.splitlines()]
    assert lines[0] == 'pip install -e ".[local]" && asyncjob demo'
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert lines[1] == ci[-1]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_the_command_line_synopsis_matches_the_parser() -> None:
    (synopsis,) = blocks("", section("Command line"))
    parser = build_parser()
    commands = _subparsers(parser)
    checked = 0
    for line in synopsis.splitlines():
        words = line.split("#")[0].replace("|", " ").replace("[", " ").replace("]", " ").split()
        assert words[0] == "asyncjob"
        names = [w for w in words[1:] if w in commands]
        flags = [w.split("=")[0] for w in words if w.startswith("-") and w != "..."]
        for flag in flags:
            known = [parser] if not names else [commands[n] for n in names]
            assert all(flag in p._option_string_actions for p in known), (line, flag)
            checked += 1
    assert checked >= 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_troubleshooting_commands_print_what_the_readme_shows(tmp_path: Path) -> None:
    """Each `$ command` of the Troubleshooting section, run, prints the line shown after it."""
    no_aer = tmp_path / "no_aer"
    no_aer.mkdir()
    (no_aer / "sitecustomize.py").write_text("import sys\nsys.modules['qiskit_aer'] = None\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOB_")}
    env.pop("XDG_CONFIG_HOME", None)  # the config file is then ~/.config/asyncjob/config.toml
    env.update(HOME=str(home), PYTHONPATH=str(no_aer))
    consoles = blocks("console", section("Troubleshooting"))
    assert len(consoles) >= 5
    ran = 0
    with LocalScheduler(executor="sampler").run_in_thread() as server:
        env["ASYNCJOB_TOKEN"] = server.token
        live, dead = f"127.0.0.1:{server.port}", f"127.0.0.1:{_free_port()}"
        for console in consoles:
            lines = console.splitlines()
            for index, line in enumerate(lines):
                if not line.startswith("$ "):
                    continue
                expected = lines[index + 1]
                command = line[2:].replace("127.0.0.1:8000", live).replace("127.0.0.1:8001", dead)
                argv = shlex.split(command)
                assert argv[0] == "asyncjob"
                done = subprocess.run(
                    [sys.executable, "-m", "asyncjob", *argv[1:]],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    stdin=subprocess.DEVNULL,
                )
                shown = (done.stdout + done.stderr).strip().replace(str(home), "~")
                shown = shown.replace(live, "127.0.0.1:8000").replace(dead, "127.0.0.1:8001")
                assert shown == expected, command
                ran += 1
    assert ran >= 6


@pytest.mark.parametrize("name", ["asyncjob-quantum"])
def test_the_distribution_is_installed_under_its_name(name: str) -> None:
    from importlib import metadata

    from asyncjob._version import DISTRIBUTION

    assert metadata.version(name)
    assert name == distribution() == DISTRIBUTION
