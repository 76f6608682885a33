"""Which cost profile a compile uses: a given file, the calibrated profile shipped for this kind of
machine (target `cpu`), or the target's uncalibrated preset."""

from __future__ import annotations

import platform
from importlib import resources
from pathlib import Path

from embmap.cost_models import preset_profile
from embmap.ir.cost_profile import CostProfile
from embmap.ir.errors import SpecError
from embmap.ir.loader import parse_document, read_document, validate
from embmap.ir.spec import TargetSpec
from embmap.ir.targets import usable_cpus

SHIPPED_PROFILES = {"cpu": "cpu.json"}
SHIPPED_MEASUREMENTS = Path(str(resources.files("embmap.cost_models").joinpath("profiles", "cpu-measurements.csv")))
"""The measurements the shipped cpu profile was fitted to (`embmap calibrate --check` measures some again)."""


def machine_key() -> str:
    """What identifies 'this kind of machine' for a shipped profile: CPU model and usable core count."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {len(usable_cpus())} cores"


def shipped_profile(target: TargetSpec) -> CostProfile | None:
    """The calibrated profile shipped for the target on this kind of machine, if there is one."""
    name = SHIPPED_PROFILES.get(target.name)
    if name is None:
        return None
    try:
        text = resources.files("embmap.cost_models").joinpath("profiles", name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        return None
    profile = validate(CostProfile, parse_document(text, True, f"shipped profile {name}"), f"shipped profile {name}")
    if profile.fit is None or profile.fit.machine != machine_key():
        return None
    return profile


def default_profile(target: TargetSpec) -> CostProfile:
    return shipped_profile(target) or preset_profile(target)


def load_profile(path: Path) -> CostProfile:
    if not path.is_file():
        raise SpecError("--profile", f"no such file {str(path)!r}", "give a profile written by `embmap calibrate -o`")
    return validate(CostProfile, read_document(path, "profile"), "profile")
