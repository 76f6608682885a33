"""Predicted against measured, per strategy: how well a calibrated profile prices the work items it was fitted
to and those it was not (docs/calibration.md's scatter).

`python -m embmap.mapper.calibration_scatter -o docs/calibration-scatter.png` draws the shipped cpu profile
against the measurements it was fitted to (cost_models/profiles/cpu-measurements.csv), or any pair given with
--measurements and --profile. Each measurement is priced exactly as the fit priced it: the shared cache's state
over the measurement's plan at the profile's effective cache fraction, its core's neighbours, the profile's
main-memory window. Held-out points (every fifth, `i % 5 == 2`, as the fit held them out) are drawn hollow.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embmap.ir.output import check_outputs, write_atomic

if TYPE_CHECKING:
    from embmap.cost_models.measurements import Measurement
    from embmap.ir.cost_profile import CostProfile
    from embmap.ir.spec import TargetSpec

STRATEGIES = ("GM", "L1", "GM-UB", "L1-UB")
HOLDOUT_EVERY = 5  # as `fit_profile`'s default: measurement i is held out when i % 5 == 2


@dataclass(frozen=True)
class Priced:
    """One measurement beside the profile's price for it."""

    strategy: str
    measured_s: float
    predicted_s: float
    held_out: bool


def predictions(measurements: Sequence[Measurement], target: TargetSpec, profile: CostProfile) -> list[float]:
    """The profile's price of every measurement, as `fit_profile` computes it for the profile's effective cache
    fraction and main-memory window."""
    from embmap.cost_models.analytic import coefficient
    from embmap.cost_models.calibrate import (
        cache_states_of,
        measurement_terms,
        neighbour_bytes_of,
        neighbour_pages_of,
    )

    states = cache_states_of(measurements, target, profile.cache_effective_fraction)
    neighbours = neighbour_bytes_of(measurements)
    pages = neighbour_pages_of(measurements, target.tlb)
    prices = []
    for m, state, others, other_pages in zip(measurements, states, neighbours, pages, strict=True):
        terms = measurement_terms(m, target, state, others, other_pages, profile.main_window_rows)
        prices.append(sum(amount * coefficient(profile, p) for p, amount in terms.items()))
    return prices


def priced(measurements: Sequence[Measurement], target: TargetSpec, profile: CostProfile) -> list[Priced]:
    return [
        Priced(m.strategy.value, m.measured_s, p, i % HOLDOUT_EVERY == 2)
        for i, (m, p) in enumerate(zip(measurements, predictions(measurements, target, profile), strict=True))
    ]


def error_table(points: Sequence[Priced]) -> list[str]:
    """docs/calibration.md's table: per strategy, the items, the signed and absolute median errors (held out
    apart), the share within 25% and the worst."""
    out = [
        "| strategy | items | median error (signed) | median \\|error\\| | held out: median \\|error\\| | within 25% | worst |",
        "|---|---|---|---|---|---|---|",
    ]
    for strategy in ("GM", "L1", "GM-UB", "L1-UB"):
        mine = [p for p in points if p.strategy == strategy]
        if not mine:
            continue
        signed = [(p.predicted_s - p.measured_s) / p.measured_s for p in mine]
        absolute = [abs(e) for e in signed]
        held = [abs(e) for e, p in zip(signed, mine, strict=True) if p.held_out]
        within = sum(e <= 0.25 for e in absolute) / len(absolute)
        out.append(
            f"| {strategy} | {len(mine):,} | {statistics.median(signed):+.1%} | {statistics.median(absolute):.1%} | "
            f"{statistics.median(held) if held else float('nan'):.1%} | {within:.0%} | {max(absolute):.0%} |"
        )
    return out


def draw_scatter(points: Sequence[Priced], path: Path, title: str) -> Path:
    """One panel per strategy: predicted (x) against measured (y), log axes, the y = x line and +-25% band."""
    from embmap.mapper.gantt import STRATEGY_COLORS, pyplot

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 9.5), squeeze=False)
    low = min(min(p.measured_s, p.predicted_s) for p in points) / 1.5
    high = max(max(p.measured_s, p.predicted_s) for p in points) * 1.5
    for ax, strategy in zip(axes.flat, STRATEGIES, strict=True):
        mine = [p for p in points if p.strategy == strategy]
        _panel(ax, mine, strategy, STRATEGY_COLORS[strategy], (low, high))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    write_atomic(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".").lower() or "png", dpi=110), "--output")
    plt.close(fig)
    return path


def _panel(ax: Any, points: Sequence[Priced], strategy: str, color: str, limits: tuple[float, float]) -> None:
    low, high = limits
    ax.plot([low, high], [low, high], color="black", linewidth=0.8, label="y = x")
    ax.fill_between([low, high], [low / 1.25, high / 1.25], [low * 1.25, high * 1.25], color="grey", alpha=0.15)
    for held, style in ((False, {"color": color}), (True, {"facecolors": "none", "edgecolors": color})):
        group = [p for p in points if p.held_out == held]
        ax.scatter(
            [p.predicted_s for p in group],
            [p.measured_s for p in group],
            s=9,
            linewidths=0.7,
            alpha=0.6,
            label=f"{'held out' if held else 'fitted'} ({len(group)})",
            **style,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    _time_ticks(ax)
    errors = sorted(abs(p.predicted_s - p.measured_s) / p.measured_s for p in points)
    median = errors[len(errors) // 2] if errors else math.nan
    ax.set_title(f"{strategy}: {len(points)} items, median |error| {median:.1%}", fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("measured")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)


def _time_ticks(ax: Any) -> None:
    """Decades labelled in the unit that reads best: 100 ns, 1 us, 10 us, ..."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def label(value: float, _: object) -> str:
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
            if value >= scale * 0.999:
                return f"{value / scale:g} {unit}"
        return f"{value:g} s"

    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10))
        axis.set_major_formatter(FuncFormatter(label))
        axis.set_minor_formatter(NullFormatter())


def main(argv: Sequence[str] | None = None) -> int:
    from embmap.cost_models.measurements import read_csv
    from embmap.ir.cost_profile import CostProfile
    from embmap.mapper.compiler import resolve_target
    from embmap.mapper.profiles import SHIPPED_MEASUREMENTS

    shipped_profile = SHIPPED_MEASUREMENTS.with_name("cpu.json")
    parser = argparse.ArgumentParser(prog="python -m embmap.mapper.calibration_scatter", description=__doc__)
    parser.add_argument("--measurements", type=Path, default=SHIPPED_MEASUREMENTS, help="a measurements CSV")
    parser.add_argument("--profile", type=Path, default=shipped_profile, help="the profile fitted to them")
    parser.add_argument("--target", default="cpu")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the picture (.png or .svg)")
    args = parser.parse_args(argv)
    check_outputs([("--output", args.output)], [args.measurements, args.profile])
    measurements = read_csv(args.measurements)
    profile = CostProfile.model_validate_json(args.profile.read_text(encoding="utf-8"))
    points = priced(measurements, resolve_target(args.target), profile)
    errors = sorted(abs(p.predicted_s - p.measured_s) / p.measured_s for p in points)
    title = (
        f"{args.profile.name} against {args.measurements.name}: {len(points)} work items, "
        f"median |error| {errors[len(errors) // 2]:.1%}; grey band: within 25%"
    )
    print(f"wrote {draw_scatter(points, args.output, title)}")
    print("\n".join(error_table(points)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
