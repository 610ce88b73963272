"""The README's settings table documents exactly the variables Settings reads."""

from __future__ import annotations

import re
from pathlib import Path

from services.config import env_names

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_readme_table_and_nothing_else():
    text = README.read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([A-Z0-9_]+)` \|", section, flags=re.MULTILINE)
    assert sorted(documented) == sorted(env_names())
