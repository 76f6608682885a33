"""Which cost profile a compile uses: a given file, the calibrated profile shipped for this kind of
machine (target `cpu`), or the target's uncalibrated preset."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ProfileChoice:
    """The cost profile a compile uses for a target when given none, and why: `embmap targets` shows it."""

    profile: CostProfile
    shipped: bool  # the calibrated profile shipped for this kind of machine; else the target's preset
    why: str  # a line: which profile, and why this one
    detail: str  # a line: how the shipped profile was fitted, or how to fit one

    def lines(self) -> tuple[str, str]:
        kind = "calibrated" if self.shipped else "uncalibrated preset (from the target's own numbers)"
        return f"{kind}, {self.why}", self.detail


def _fit_one(target: TargetSpec, measure_here: bool) -> str:
    source = "" if measure_here else " --from-csv MEASUREMENTS.csv"
    return f"fit one: `embmap calibrate --target {target.name}{source} -o PROFILE.json`, then compile with --profile"


def profile_choice(target: TargetSpec) -> ProfileChoice:
    """The calibrated profile shipped for the target where this is the kind of machine it was fitted on (CPU model
    and usable core count), else the target's uncalibrated preset; with the reason in words."""
    name = SHIPPED_PROFILES.get(target.name)
    if name is None:
        why = f"as no calibrated profile ships for target {target.name}"
        return ProfileChoice(preset_profile(target), False, why, _fit_one(target, False))
    try:
        text = resources.files("embmap.cost_models").joinpath("profiles", name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        why = f"as the shipped profile {name} is missing from this install"
        return ProfileChoice(preset_profile(target), False, why, _fit_one(target, True))
    profile = validate(CostProfile, parse_document(text, True, f"shipped profile {name}"), f"shipped profile {name}")
    here = machine_key()
    if profile.fit is None or profile.fit.machine != here:
        fitted_on = profile.fit.machine if profile.fit else "an unrecorded machine"
        why = f"as the shipped profile {name} was fitted on {fitted_on} and this machine is {here}"
        return ProfileChoice(preset_profile(target), False, why, _fit_one(target, True))
    fit = profile.fit
    return ProfileChoice(
        profile,
        True,
        f"the shipped {name}, fitted on this kind of machine ({fit.machine}); held-out median error "
        f"{fit.holdout_median_rel_error:.1%}",
        f"fitted by `{fit.command}`",
    )


def shipped_profile(target: TargetSpec) -> CostProfile | None:
    """The calibrated profile shipped for the target on this kind of machine, if there is one."""
    choice = profile_choice(target)
    return choice.profile if choice.shipped else None


def default_profile(target: TargetSpec) -> CostProfile:
    """The profile a compile uses when given none (`profile_choice`)."""
    return profile_choice(target).profile


def load_profile(path: Path, target: TargetSpec | str | None = None, force: bool = False) -> CostProfile:
    """The profile in a file; with `target` (a TargetSpec, built-in name or file, as `compile` takes), one made
    for that target (`check_profile_target`)."""
    if not path.is_file():
        raise SpecError("--profile", f"no such file {str(path)!r}", "give a profile written by `embmap calibrate -o`")
    profile = validate(CostProfile, read_document(path, "profile"), "profile")
    if target is not None:
        from embmap.mapper.compiler import resolve_target  # the compiler chooses profiles: imported when used

        warning = check_profile_target(profile, resolve_target(target), path.name, force)
        if warning:
            sys.stderr.write(f"embmap: warning: {warning}\n")
    return profile


def check_profile_target(profile: CostProfile, target: TargetSpec, where: str, force: bool = False) -> str:
    """A profile's costs are those of the target it was made for (its `target`, the name `embmap calibrate
    --target` and the presets record): one made for another target is refused, naming both, unless `force`d;
    then the returned line says so ("" where the targets agree)."""
    if profile.target == target.name:
        return ""
    made_for, name = _printable(profile.target), _printable(target.name)
    problem = f"{_printable(where)} was made for target {made_for}, and this compile is for target {name}"
    if force:
        return f"--profile: {problem}; used anyway (--force-profile)"
    raise SpecError(
        "--profile",
        problem,
        f"give a profile made for {name}, as `embmap calibrate --target {name}"
        f"{'' if target.name == 'cpu' else ' --from-csv MEASUREMENTS.csv'} -o PROFILE.json` fits, or add "
        "--force-profile to use this one anyway",
    )


def _printable(text: str) -> str:
    """A name from a file, for one line of output: as written, or escaped where it holds control characters."""
    return text if text.isprintable() else ascii(text)
