"""The docs speak to their readers: the README's settings table documents exactly the
variables Settings reads, and no tracked file points at what a reader cannot see (internal
issue numbers, "the seed", a design document outside the repository)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from services.config import env_names

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table_and_nothing_else():
    text = README.read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.MULTILINE)
    assert sorted(documented) == sorted(env_names())


# ---- words a reader of the repository cannot follow ----------------------------------------

ROOT = README.parent
TEXT_SUFFIXES = {".md", ".py", ".mk", ".sql", ".js", ".html", ".css", ".yaml", ".yml", ".tf",
                 ".toml", ".txt", ".sh", ".cfg", ".ini", ".json"}  # fmt: skip
UNREADABLE = re.compile(
    r"\bissues? #?\d+|\bthe seed\b|\bseed's\b|\.\./shared|\bDESIGN\.md\b", re.IGNORECASE
)
# Files whose owners are rewriting them in work not yet merged; each must still contain a
# hit (so this list cannot outlive the fix), and is checked like any other once removed.
PENDING: set[str] = set()


def tracked_text_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [
        name
        for name in listed
        if (Path(name).suffix in TEXT_SUFFIXES or Path(name).name in ("Makefile", "run"))
        and name != "tests/test_docs.py"
        and (ROOT / name).is_file()
    ]


def hits(name: str) -> list[str]:
    text = (ROOT / name).read_text(errors="replace")
    return [
        f"{name}:{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), 1)
        if UNREADABLE.search(line)
    ]


def test_no_internal_issue_numbers_or_references_outside_the_repository():
    files = tracked_text_files()
    assert "README.md" in files and "docs/ARCHITECTURE.md" in files
    found = [hit for name in files if name not in PENDING for hit in hits(name)]
    assert found == [], "\n".join(found)
    for name in PENDING & set(files):
        assert hits(name), f"{name} is clean now: remove it from PENDING"


def test_the_pattern_catches_what_it_is_for():
    for bad in ("see issue 7", "(Issue 12)", "the seed's estimate", "in ../shared/", "DESIGN.md"):
        assert UNREADABLE.search(bad), bad
    for fine in ("a seed of 7 for the shuffle", "tissue 5", "rng = default_rng(seed)"):
        assert not UNREADABLE.search(fine), fine
