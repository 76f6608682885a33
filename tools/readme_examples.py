"""Regenerate, or check, the command outputs shown in README.md, docs/workloads.md and docs/targets.md.

Usage (from the repository root): python tools/readme_examples.py [--check]

An example is a fenced block between `<!-- example: NAME -->` and `<!-- /example -->`. Its `$ ` lines are
`embmap` commands (a line ending in a backslash continues on the next), each followed by what the command
prints, stdout and stderr as they interleave; this script runs the commands and rewrites those outputs.
`<!-- example: NAME keep=REGEX -->` shows an excerpt: of the indented lines of the output, only those that
match REGEX, each run of left-out lines shown as one `  ...`. A fenced block after `<!-- file: NAME -->` is
written as file NAME before any command runs, so that an example can compile the page's own YAML.

All commands run in one temporary directory, page after page in the order of PAGES, so that a command can
read a plan an earlier one wrote. They run through `embmap.mapper.cli.main` in this process (the same code
as the `embmap` script, without a Python start-up per command). Blocks without markers, such as measured
timings, are left alone. Wall-clock times in the output (the elapsed time of the solver's progress lines,
its wall time in `explain`) differ from run to run, so --check compares with them masked; everything else
is deterministic (CP-SAT's time limit counts deterministic time).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAGES = ("README.md", "docs/workloads.md", "docs/targets.md")
EMBMAP = (".venv/bin/embmap", "embmap")
EXAMPLE = re.compile(
    r"(?P<open><!-- example: (?P<spec>[^\n]*?) -->\n```(?P<lang>\w*)\n)(?P<body>.*?)(?P<close>```\n<!-- /example -->)",
    re.DOTALL,
)
FILE = re.compile(r"<!-- file: (?P<name>[\w.\-]+) -->\n```\w*\n(?P<body>.*?)```\n", re.DOTALL)
MARKER = re.compile(r"<!-- /?(example|file)\b")
VOLATILE = (
    (re.compile(r"(?m)^(assign-cores +)\d+\.\d+ s\b"), r"\1<wall> s"),  # progress lines: elapsed time
    (re.compile(r"(gap \d+\.\d+%, )\d+\.\d+s\b"), r"\1<wall>s"),  # explain's solver line: wall time
)


@dataclass(frozen=True)
class Example:
    page: str
    name: str
    keep: re.Pattern[str] | None
    commands: tuple[str, ...]  # as shown, continuation lines included


def parse_examples(page: str, text: str) -> list[Example]:
    """The examples of a page, in order; a marker that does not open or close a well-formed example is an error."""
    found = list(EXAMPLE.finditer(text))
    markers = len(MARKER.findall(text))
    if markers != 2 * len(found) + len(FILE.findall(text)):
        raise ValueError(f"{page}: an example or file marker is not followed by a fenced block and its closing marker")
    examples = []
    for m in found:
        name, *options = shlex.split(m["spec"])
        keep = None
        for option in options:
            key, _, value = option.partition("=")
            if key != "keep":
                raise ValueError(f"{page}: example {name}: unknown option {option!r} (known: keep=REGEX)")
            keep = re.compile(value)
        commands = tuple(_commands(m["body"].splitlines()))
        if not commands:
            raise ValueError(f"{page}: example {name} shows no `$ embmap ...` command")
        examples.append(Example(page, name, keep, commands))
    return examples


def _commands(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if out and out[-1].endswith("\\"):  # the command goes on on this line
            out[-1] += "\n" + line
        elif line.startswith("$ "):
            out.append(line)
    return out


def run_command(shown: str) -> str:
    """What one shown command prints (stdout and stderr interleaved), run in the current directory."""
    from embmap.mapper.cli import main

    argv = shlex.split(shown.removeprefix("$ ").replace("\\\n", " "))
    if not argv or argv[0] not in EMBMAP:
        raise ValueError(f"only embmap commands can be shown as examples, got {shown!r}")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        status = main(argv[1:])
    if status != 0:
        raise RuntimeError(f"{shown!r} exited with status {status}:\n{buffer.getvalue()}")
    return buffer.getvalue()


def excerpt(output: str, keep: re.Pattern[str] | None) -> str:
    """The output's lines, with the indented lines that `keep` does not match shown as one `  ...` per run."""
    lines = output.rstrip().splitlines()
    if keep is None:
        return "\n".join(line.rstrip() for line in lines)
    shown: list[str] = []
    for line in lines:
        if line.startswith(" ") and not keep.search(line):
            if shown[-1:] != ["  ..."]:
                shown.append("  ...")
        else:
            shown.append(line.rstrip())
    return "\n".join(shown)


def render(example: Example) -> str:
    """The example's block body: each command as shown, then its output."""
    parts = []
    for command in example.commands:
        output = excerpt(run_command(command), example.keep)
        parts.append(command + ("\n" + output if output else ""))
    return "\n".join(parts) + "\n"


def regenerate(root: Path = ROOT) -> dict[str, str]:
    """Every page with its example outputs as the commands print them today, by page path."""
    texts = {page: (root / page).read_text(encoding="utf-8") for page in PAGES}
    with tempfile.TemporaryDirectory(prefix="embmap-examples-") as work:
        for text in texts.values():
            for m in FILE.finditer(text):
                (Path(work) / m["name"]).write_text(m["body"], encoding="utf-8")
        here = os.getcwd()
        os.chdir(work)
        try:
            return {page: _regenerate_page(page, text) for page, text in texts.items()}
        finally:
            os.chdir(here)


def _regenerate_page(page: str, text: str) -> str:
    examples = iter(parse_examples(page, text))

    def replace(m: re.Match[str]) -> str:
        return m["open"] + render(next(examples)) + m["close"]

    return EXAMPLE.sub(replace, text)


def masked(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def differences(root: Path = ROOT) -> dict[str, str]:
    """Unified diffs, by page, between the committed pages and what the commands print today (times masked);
    empty when every page is up to date."""
    out = {}
    for page, fresh in regenerate(root).items():
        committed = masked((root / page).read_text(encoding="utf-8"))
        if committed != masked(fresh):
            diff = difflib.unified_diff(
                committed.splitlines(),
                masked(fresh).splitlines(),
                f"{page} (committed)",
                f"{page} (today)",
                lineterm="",
            )
            out[page] = "\n".join(diff)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail (status 1) where a page differs; write nothing")
    args = parser.parse_args(argv)
    if args.check:
        diffs = differences()
        for diff in diffs.values():
            print(diff)
        if diffs:
            print(f"out of date: {', '.join(diffs)}; run `make readme`", file=sys.stderr)
        return 1 if diffs else 0
    from embmap.ir.output import write_text_atomic

    for page, text in regenerate().items():
        path = ROOT / page
        if masked(path.read_text(encoding="utf-8")) != masked(text):  # not for wall times alone
            write_text_atomic(path, text)
            print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
