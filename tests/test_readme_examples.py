"""The command outputs shown in README.md, docs/workloads.md and docs/targets.md are what the commands print
today (tools/readme_examples.py; `make readme` regenerates them), and the script's excerpts and masks do what
it says."""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_examples", ROOT / "tools" / "readme_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_shown_outputs_are_what_the_commands_print_today() -> None:
    diffs = _tool().differences()
    assert not diffs, "stale example outputs; run `make readme`:\n" + "\n".join(diffs.values())


def test_every_page_has_examples_and_each_names_a_command() -> None:
    tool = _tool()
    names = []
    for page in tool.PAGES:
        examples = tool.parse_examples(page, (ROOT / page).read_text(encoding="utf-8"))
        assert examples, f"{page} shows no example"
        names += [e.name for e in examples]
    assert len(names) == len(set(names)), "example names repeat"


def test_continued_commands_and_excerpts() -> None:
    tool = _tool()
    text = (
        "<!-- example: two keep='^  (b|d) ' -->\n```text\n$ embmap a \\\n    --b\nold output\n"
        "$ .venv/bin/embmap c\n```\n<!-- /example -->\n"
    )
    (example,) = tool.parse_examples("page", text)
    assert example.commands == ("$ embmap a \\\n    --b", "$ .venv/bin/embmap c")
    output = "head:\n  a 1\n  b 2\n  c 3\n  c 4\n  d 5\n  e 6\ntail\n"
    assert tool.excerpt(output, example.keep) == "head:\n  ...\n  b 2\n  ...\n  d 5\n  ...\ntail"


@pytest.mark.parametrize(
    "text",
    [
        "<!-- example: x -->\n```text\nno command\n```\n<!-- /example -->\n",
        "<!-- example: x -->\n```text\n$ embmap passes\n```\n",
        "<!-- example: x color=red -->\n```text\n$ embmap passes\n```\n<!-- /example -->\n",
    ],
)
def test_malformed_examples_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        _tool().parse_examples("page", text)


def test_only_wall_times_are_masked() -> None:
    tool = _tool()
    progress = "assign-cores    1.46 s  done       best   31.920us  bound 31.752us  gap 0.53%  UNKNOWN"
    solver = "objective 28.8us, best bound 28.5us, gap 0.90%, 1.46s, greedy hint 31.9us"
    assert tool.masked(progress) == tool.masked(progress.replace("1.46", "12.07"))
    assert tool.masked(solver) == tool.masked(solver.replace("1.46s", "0.31s"))
    assert tool.masked(progress) != tool.masked(progress.replace("31.920", "31.921"))
    assert re.search(r"gap 0\.90%", tool.masked(solver))
