"""The README's Configuration table and the Settings class name the same variables."""

from __future__ import annotations

import re
from pathlib import Path

from core.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_variables() -> set[str]:
    text = README.read_text()
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(
        re.findall(r"^\| `(RISKSTREAM_[A-Z0-9_]+)` \|", table, flags=re.MULTILINE)
    )


def test_readme_configuration_table_lists_exactly_the_settings() -> None:
    in_code = {f"RISKSTREAM_{name.upper()}" for name in Settings.model_fields}
    in_readme = documented_variables()
    undocumented = sorted(in_code - in_readme)
    unknown = sorted(in_readme - in_code)
    assert not undocumented, (
        f"add rows to the README's Configuration table for {', '.join(undocumented)}"
    )
    assert not unknown, (
        f"the README documents variables Settings does not read: {', '.join(unknown)}"
    )
