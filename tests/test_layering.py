"""The house rules, read from the source: one namespace, imports down the layers, one file per pass, short
files and functions.

Layers (docs/design.md, "Data flows one way"): `ir` imports nothing else of embmap; `cost_models` imports
`ir`; `passes` imports `ir` and `cost_models`; `runtime` imports only the plan's contract in `ir` (an outside
runtime needs nothing else); `mapper` may import everything. No pass imports another pass: what passes share
lives in the library they call.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ir", "cost_models", "passes", "runtime", "mapper")
SOURCES = [*PACKAGES, "tests", "benchmarks", "tools", "embmap"]
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80

# What each layer may import of embmap (beyond itself).
ALLOWED = {
    "ir": set(),
    "cost_models": {"ir"},
    "passes": {"ir", "cost_models"},
}
# The modules of `ir` a runtime needs: the plan and the specs it embeds, their errors, how indices are drawn
# (distributions) and what this machine offers (targets).
RUNTIME_IR = {"embmap.ir.plan", "embmap.ir.spec", "embmap.ir.errors", "embmap.ir.distributions", "embmap.ir.targets"}


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in the file, absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(["embmap", *path.relative_to(ROOT).with_suffix("").parts[:-1]])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:  # `from embmap.passes import balance` imports a module too
                yield node.lineno, f"{module}.{alias.name}"


def files_of(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_nothing_imports_the_folders_by_their_bare_names() -> None:
    bare = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for folder in SOURCES
        if not (ROOT / folder).is_symlink()
        for path in files_of(folder)
        if folder != "embmap" or path.parent == ROOT / "embmap"
        for line, module in imported_modules(path)
        if module.split(".")[0] in PACKAGES
    ]
    assert not bare, "import embmap.<package>, not the bare folder:\n" + "\n".join(bare)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below(layer: str) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in files_of(layer)
        for line, module in imported_modules(path)
        if module.startswith("embmap.")
        and module.split(".")[1] != layer
        and module.split(".")[1] not in ALLOWED[layer]
        and module.split(".")[1] in PACKAGES
    ]
    assert not wrong, f"{layer}/ may import only {sorted(ALLOWED[layer]) or 'nothing else of embmap'}:\n" + "\n".join(
        wrong
    )


def test_the_runtime_needs_only_the_plans_contract() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in files_of("runtime")
        for line, module in imported_modules(path)
        if module.startswith("embmap.")
        and module.split(".")[1] != "runtime"
        and ".".join(module.split(".")[:3]) not in RUNTIME_IR
    ]
    assert not wrong, f"runtime/ may import of embmap only {sorted(RUNTIME_IR)}:\n" + "\n".join(wrong)


def pass_modules() -> dict[str, Path]:
    """The modules of passes/ that define a pass (a class deriving from ModulePass)."""
    found = {}
    for path in files_of("passes"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "ModulePass" for b in node.bases):
                found[".".join(["embmap", *path.relative_to(ROOT).with_suffix("").parts])] = path
    return found


def test_each_pass_lives_in_a_file_named_after_it_and_imports_no_other_pass() -> None:
    passes = pass_modules()
    for module, path in passes.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [
            stmt.value.value
            for node in tree.body
            if isinstance(node, ast.ClassDef)
            for stmt in node.body
            if isinstance(stmt, ast.Assign)
            and any(getattr(t, "id", None) == "name" for t in stmt.targets)
            and isinstance(stmt.value, ast.Constant)
        ]
        assert names == [path.stem.replace("_", "-")], f"{path.relative_to(ROOT)} defines passes {names}"
        others = {m for _, m in imported_modules(path) if m in passes and m != module}
        assert not others, f"{path.relative_to(ROOT)} imports the passes {sorted(others)}"


def test_files_and_functions_are_short_enough_to_read_at_once() -> None:
    long_files, long_functions = [], []
    for folder in PACKAGES:
        for path in files_of(folder):
            text = path.read_text(encoding="utf-8")
            if len(text.splitlines()) > MAX_FILE_LINES:
                long_files.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long_files and not long_functions, "\n".join(long_files + long_functions)
