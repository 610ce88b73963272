"""Every command's ``--help`` is written for the person typing it: it runs, names the
command as it is typed, shows an example, and carries no markup or internal words. Each
module runs as ``python -m`` runs it (as ``__main__``), in this process to keep it quick."""

from __future__ import annotations

import os
import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = [
    ("services.cli",),
    ("services.cli", "chat"),
    ("services.cli", "memories"),
    ("services.admin",),
    ("services.migrate",),
    ("services.usage",),
    ("services.usage", "report"),
    ("services.jobs",),
    ("services.jobs", "embed"),
    ("services.jobs", "retention"),
    ("bench.summary",),
    ("bench.service_bench",),
    ("bench.store_bench",),
    ("bench.jobs_bench",),
    ("bench.cost_bench",),
    ("bench.agent_bench",),
    ("bench.compare_stores",),  # runs in its own virtualenv, but --help works anywhere
    ("bench.quality.locomo",),
    ("bench.quality.make_synthetic",),
]
# Words only someone who read the code would understand.
INTERNAL = re.compile(r"migration \d{3}|build_report|\bissue\b|\bseed\b|DESIGN\.md|::|\w+\(\)")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # runpy: module already imported
def test_every_command_help_has_an_example_and_no_markup(capsys, monkeypatch):
    problems = []
    environ = dict(os.environ)  # a module run as a command may set variables for itself
    try:
        check_each(problems, capsys, monkeypatch)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    assert problems == [], "\n".join(problems)


def check_each(problems: list[str], capsys, monkeypatch) -> None:
    for command in COMMANDS:
        name = " ".join(command)
        # As `python -m NAME --help` would run it, in this process (one import of each).
        monkeypatch.setattr(sys, "argv", [command[0], *command[1:], "--help"])
        try:
            runpy.run_module(command[0], run_name="__main__", alter_sys=True)
            status = "returned without exiting"
        except SystemExit as exit:
            status = exit.code
        out, err = capsys.readouterr()
        if status not in (0, None):
            problems.append(f"{name}: exit {status}: {err[-500:]}")
            continue
        if not out.startswith(f"usage: python -m {name}"):
            problems.append(f"{name}: usage line is {out.splitlines()[:1]}")
        if "Example" not in out:
            problems.append(f"{name}: no example")
        if "`" in out:
            problems.append(f"{name}: backticks")
        if found := INTERNAL.search(out):
            problems.append(f"{name}: internal word {found.group(0)!r}")
