"""The README's "Faults and bad input" table names tests that exist (so the table stays true)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABBREVIATIONS = {
    "F": "test_cli_exit_codes_and_ops.py",
    "I": "test_ids_and_rest.py",
    "B": "test_reliability_bounds.py",
}
"""Short file names some sections of the table define in their heading row."""
REFERENCE = re.compile(r"`(?:([A-Za-z_]+\.py|[A-Z]))?::([A-Za-z0-9_]+)(?:\[[^\]]*\])?`")


def table_references() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Faults and bad input") : text.index("## Development")]
    refs = []
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        current = None  # `file.py::name` sets the file for the `::name` entries after it
        for match in REFERENCE.finditer(line.split(" | ")[-1]):
            current = match.group(1) or current
            if current is not None:
                refs.append((ABBREVIATIONS.get(current, current), match.group(2)))
    return refs


def test_every_test_the_faults_table_names_exists() -> None:
    refs = table_references()
    assert len(refs) > 150  # the table is read, not skipped
    missing = [
        f"{path}::{name}"
        for path, name in refs
        if not (ROOT / "tests" / path).exists()
        or f"def {name}(" not in (ROOT / "tests" / path).read_text(encoding="utf-8")
    ]
    assert not missing, f"the README's faults table names tests that do not exist: {missing}"
