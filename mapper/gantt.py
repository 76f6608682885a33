"""A plan drawn as a schedule: one row per core (or per group of identical cores), its items as bars over the
predicted time of one batch, coloured by strategy and labelled by table, with the lower bound and the makespan
marked (`embmap explain PLAN --gantt out.png|out.svg`, `draw_gantt`).

Hundreds of cores stay readable because cores that run the same sequence of (table, strategy, duration) items
share one row ("cores 4-19 (x16)"), and at most `MAX_ROWS` rows are drawn: those that finish last, the rows
that decide the makespan; a note says how many rows (and cores) were left out and by when they finish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embmap.ir.errors import ResourceError, SpecError
from embmap.ir.output import check_outputs, is_stdout, write_atomic
from embmap.ir.printer import printable

if TYPE_CHECKING:
    from embmap.ir.plan import ExecutionPlan

STRATEGY_COLORS = {"GM": "tab:blue", "L1": "tab:green", "GM-UB": "tab:orange", "L1-UB": "tab:red"}
FORMATS = {".png": "png", ".svg": "svg"}  # suffix -> matplotlib format
MAX_ROWS = 40  # rows drawn at most; more would be thinner than a label
DURATION_DIGITS = 3  # significant digits of an item's duration when cores are compared
ROW_HEIGHT_IN = 0.3
WIDTH_IN = 11.0
LEFT, RIGHT = 0.17, 0.98  # the axes' share of the figure's width (row labels on the left)


@dataclass(frozen=True)
class CoreGroup:
    """Cores that run the same sequence of (table, strategy, duration) items, drawn as one row from the first
    of them; `finish_s` is the latest finish among them."""

    cores: tuple[int, ...]
    finish_s: float

    @property
    def label(self) -> str:
        if len(self.cores) == 1:
            return f"core {self.cores[0]}"
        return f"cores {core_ranges(self.cores)} (x{len(self.cores)})"


def core_ranges(cores: Sequence[int], most: int = 3) -> str:
    """Sorted core numbers as ranges, "0-3, 8, 10-11", at most `most` ranges and then "...": a row label."""
    runs: list[tuple[int, int]] = []
    for c in sorted(cores):
        if runs and c == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], c)
        else:
            runs.append((c, c))
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs]
    return ", ".join(text[:most]) + (", ..." if len(text) > most else "")


def _rounded(seconds: float) -> float:
    return float(f"{seconds:.{DURATION_DIGITS}g}")


def core_signature(plan: ExecutionPlan, core: int) -> tuple[tuple[str, str, float], ...]:
    """What a core runs, in order: (table, strategy, duration to DURATION_DIGITS significant digits). Two cores
    with one signature draw the same row (sample slices that differ by a sample or two are alike)."""
    items = plan.items
    return tuple(
        (items[i].table, items[i].strategy.value, _rounded(items[i].finish_s - items[i].start_s))
        for i in plan.cores[core].items
    )


def group_cores(plan: ExecutionPlan) -> list[CoreGroup]:
    """The plan's cores grouped by `core_signature` (idle cores form one group), in the order of each group's
    first core."""
    groups: dict[tuple[tuple[str, str, float], ...], list[int]] = {}
    for c in plan.cores:
        groups.setdefault(core_signature(plan, c.core), []).append(c.core)
    finish = {c.core: c.finish_s for c in plan.cores}
    return sorted(
        (CoreGroup(tuple(cores), max(finish[c] for c in cores)) for cores in groups.values()),
        key=lambda g: g.cores[0],
    )


def shown_rows(groups: Sequence[CoreGroup], max_rows: int = MAX_ROWS) -> tuple[list[CoreGroup], list[CoreGroup]]:
    """(drawn, left out): at most `max_rows` groups, those that finish last (they decide the makespan), drawn in
    core order."""
    if len(groups) <= max_rows:
        return list(groups), []
    by_finish = sorted(groups, key=lambda g: (-g.finish_s, g.cores[0]))
    kept = {id(g) for g in by_finish[:max_rows]}
    return [g for g in groups if id(g) in kept], [g for g in groups if id(g) not in kept]


def gantt_format(path: Path | str, field: str = "--gantt") -> str:
    """The image format a path asks for by its suffix (png or svg), or one line saying which it may end in."""
    if is_stdout(path):
        raise SpecError(
            field, "draws an image file, not text for standard output", "give a path ending in .png or .svg"
        )
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SpecError(
            field,
            f"{printable(str(path))} has suffix {suffix or '(none)'!r}, not an image format embmap draws",
            "end the name with .png or .svg",
        )
    return FORMATS[suffix]


def check_gantt_path(path: Path | str, inputs: Sequence[Path | str] = (), field: str = "--gantt") -> str:
    """Refuse, before any work, a path the Gantt chart cannot be written to; its format otherwise."""
    if not is_stdout(path):
        check_outputs([(field, Path(path))], inputs)
    return gantt_format(path, field)


def draw_gantt(plan: ExecutionPlan, path: Path | str, max_rows: int = MAX_ROWS, field: str = "--gantt") -> Path:
    """Draw the plan's predicted schedule into `path` (.png or .svg, by its suffix), written atomically."""
    fmt = check_gantt_path(path, field=field)
    plt = pyplot()
    groups = group_cores(plan)
    drawn, left_out = shown_rows(groups, max_rows)
    fig = plt.figure(figsize=(WIDTH_IN, 1.9 + ROW_HEIGHT_IN * max(len(drawn), 3)))
    ax = fig.add_axes((LEFT, 0.0, RIGHT - LEFT, 1.0))
    draw_schedule(ax, plan, drawn, WIDTH_IN * (RIGHT - LEFT))
    ax.set_title(
        f"{printable(plan.workload.name)} on {printable(plan.target.name)} ({plan.target.cores} cores){_named(plan)}: "
        f"predicted schedule of one batch, {len(groups)} distinct rows" + _left_out_note(left_out, plan),
        fontsize=9,
    )
    legend(fig, plan)
    _fit_vertically(fig, ax)
    with plt.rc_context({"svg.fonttype": "none"}):  # an SVG's labels stay text: searchable, selectable
        write_atomic(Path(path), lambda f: fig.savefig(f, format=fmt, dpi=110), field)
    plt.close(fig)
    return Path(path)


def pyplot() -> Any:
    """matplotlib's pyplot on a file backend, or one line saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ResourceError(
            "matplotlib", "drawing needs matplotlib, which is not installed here", "pip install 'embmap[bench]'"
        ) from None
    return plt


def _named(plan: ExecutionPlan) -> str:
    """The pipeline's name, where the plan's pass list is a named pipeline's (or the plan names no passes)."""
    from embmap.mapper.pipelines import PIPELINES

    name = next((n for n, (text, _) in PIPELINES.items() if text == plan.pipeline), None)
    if name is None and "," not in plan.pipeline:
        name = plan.pipeline
    return "" if name is None else f", pipeline {printable(name)}"


def _left_out_note(left_out: Sequence[CoreGroup], plan: ExecutionPlan) -> str:
    if not left_out:
        return ""
    cores = sum(len(g.cores) for g in left_out)
    latest = max(g.finish_s for g in left_out)
    unit, scale = time_unit(plan.makespan_s)
    return (
        f";\n{len(left_out)} more rows ({cores} cores) not shown: they finish earlier, by {latest / scale:.3g} {unit}"
    )


def time_unit(seconds: float) -> tuple[str, float]:
    """The unit a time axis reads best in, and its scale."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return unit, scale
    return "ns", 1e-9


def draw_schedule(ax: Any, plan: ExecutionPlan, rows: Sequence[CoreGroup], width_in: float) -> None:
    """The rows' items as bars on `ax` (top row first), the lower bound and the makespan as vertical lines;
    `width_in`: the axes' width in inches, to tell which bars have room for their table's name."""
    unit, scale = time_unit(max(plan.makespan_s, plan.lower_bound_s))
    right = max(plan.makespan_s, plan.lower_bound_s) * 1.1 / scale
    label_pt = 7.0
    for y, group in enumerate(rows):
        if not plan.cores[group.cores[0]].items:
            ax.text(0, y, " idle", ha="left", va="center", fontsize=label_pt, color="grey")
        for i in plan.cores[group.cores[0]].items:
            it = plan.items[i]
            start, width = it.start_s / scale, (it.finish_s - it.start_s) / scale
            ax.barh(y, width, left=start, height=0.8, color=STRATEGY_COLORS[it.strategy.value], edgecolor="white")
            name = printable(it.table)
            if width / right * width_in * 72 > 0.62 * label_pt * len(name) + 4:  # the name fits the bar
                ax.text(start + width / 2, y, name, ha="center", va="center", fontsize=label_pt, color="white")
    ax.set_yticks(range(len(rows)), [g.label for g in rows], fontsize=7 if len(rows) > 20 else 8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, right)
    ax.set_xlabel(f"predicted time in one batch ({unit})")
    ax.axvline(plan.lower_bound_s / scale, color="black", linestyle="--", linewidth=1.0)
    ax.axvline(plan.makespan_s / scale, color="crimson", linewidth=1.2)
    ax.grid(axis="x", alpha=0.3)


def legend(fig: Any, plan: ExecutionPlan | None) -> None:
    """The strategies' colours, the bound and the makespan (with the plan's values, given one), in one row
    under the axes."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    bound, makespan = "lower bound", "makespan"
    if plan is not None:
        unit, scale = time_unit(max(plan.makespan_s, plan.lower_bound_s))
        bound += f" {plan.lower_bound_s / scale:.3g} {unit}"
        makespan += f" {plan.makespan_s / scale:.3g} {unit}"
        if plan.lower_bound_s > 0:
            makespan += f", +{plan.makespan_s / plan.lower_bound_s - 1:.1%} over the bound"
    handles = [Patch(color=c, label=s) for s, c in STRATEGY_COLORS.items()] + [
        Line2D([], [], color="black", linestyle="--", label=bound),
        Line2D([], [], color="crimson", label=makespan),
    ]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=6, fontsize=8, frameon=False)


def _fit_vertically(fig: Any, ax: Any) -> None:
    """Fixed margins in inches (title and lines' labels above, axis label and legend below), whatever the rows."""
    height = fig.get_figheight()
    top_in, bottom_in = 0.8, 0.95
    ax.set_position((LEFT, bottom_in / height, RIGHT - LEFT, (height - top_in - bottom_in) / height))
