"""docs/failure-modes.md lists every exit status the command line uses, with the numbers the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from embmap.mapper.cli import EXIT

DOC = Path(__file__).resolve().parents[1] / "docs" / "failure-modes.md"


def documented_statuses() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    table = re.search(r"<!-- exit-statuses -->\n(.*?)<!-- /exit-statuses -->", text, re.DOTALL)
    assert table, "docs/failure-modes.md has lost its exit-status table"
    rows = [line.split("|")[1:-1] for line in table.group(1).splitlines()[2:]]
    return {name.strip(): status.strip() for status, name, _ in rows}


def test_every_exit_status_is_documented_with_its_number() -> None:
    documented = documented_statuses()
    signal = documented.pop("signal")
    assert documented == {name: str(code) for name, code in EXIT.items() if name != "interrupted"}
    assert signal == "128+N" and EXIT["interrupted"] == 128 + 2  # Ctrl-C is the signal row's SIGINT
