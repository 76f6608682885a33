"""embmap installs as one package, `embmap`, and imports as a library beside anything else."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_one_top_level_package(tmp_path: Path) -> None:
    """The wheel's top level is `embmap` (and its metadata): no `ir`, `mapper` or `runtime` of its own to
    collide with other packages of those names. It carries the data files and the native executor."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("embmap-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"embmap"}
    assert "embmap/mapper/workloads/data/avazu.json" in names
    assert "embmap/cost_models/profiles/cpu.json" in names
    assert any(n.startswith("embmap/runtime/_native") and n.endswith(".so") for n in names)
    assert "embmap/passes/__init__.py" in names and "embmap/ir/plan.py" in names


def test_a_script_beside_its_own_ir_py_imports_embmap(tmp_path: Path) -> None:
    """A user's own `ir.py`, `mapper.py` or `runtime.py` next to their script shadows nothing of embmap's."""
    for name in ("ir", "mapper", "passes", "runtime", "cost_models", "workloads"):
        (tmp_path / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    script = (
        "import embmap\n"
        "from embmap.ir.spec import TableSpec\n"
        "from embmap.mapper import compile\n"
        "from embmap.runtime import run_plan\n"
        "plan = embmap.compile('tenrec-qb-article', 'ascend910', baselines=False)\n"
        "print(type(plan).__name__, embmap.__version__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ExecutionPlan ")
