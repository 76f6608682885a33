"""A readable text form of a module, for `--print-ir-after` and for reading test failures.

The JSON form (`Module.model_dump_json` / `Module.model_validate_json`) is the one that round-trips; this
one is for people.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embmap.ir.module import Module
    from embmap.ir.plan import SolverReport
    from embmap.ir.spec import TableSpec

# Characters that move the cursor, start an escape sequence, reorder text or cannot be encoded: control
# characters (C0, DEL, C1: newline, carriage return, ESC, CSI), format characters (bidirectional overrides,
# zero-width), line and paragraph separators, and lone surrogates (JSON's "\ud800").
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str) -> str:
    """`text` (a name, a path, a note from a file or the command line) safe to print on a terminal: every
    character that could forge a line, a colour or a cursor move is written as its Python escape (`\\n`,
    `\\x1b`, `\\u202e`); everything else, letters of any script included, as is."""
    if text.isprintable():  # the common case; isprintable is also false for spaces other than ' '
        return text
    return "".join(
        ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        if unicodedata.category(ch) in _UNPRINTABLE
        else ch
        for ch in text
    )


def fmt_s(seconds: float) -> str:
    """Seconds in the unit that reads best: 12.3us, 4.56ms, 1.20s."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g}{unit}"
    return f"{seconds / 1e-9:.3g}ns"


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{int(n)}B"


def _table_line(tab: TableSpec) -> str:
    dist = tab.distribution.model_dump(exclude_defaults=False) if tab.distribution else {}
    if dist.get("kind") == "empirical":  # a measured histogram: its size, not its up to 256 buckets
        dist = {"kind": "empirical", "buckets": len(dist["counts"]), "alpha": dist["alpha"]}
    dist_text = " ".join(f"{k}={v}" for k, v in dist.items() if k != "kind")
    kind = dist.get("kind", "?")
    return (
        f"  table @{tab.name} rows={tab.rows} dim={tab.dim} {tab.dtype.value} pooling={tab.pooling} "
        f"size={fmt_bytes(tab.bytes)} dist={kind}{(' ' + dist_text) if dist_text else ''}"
    )


def _solver_lines(r: SolverReport) -> list[str]:
    lines = [
        f"  solver {r.method} status={r.status} objective={fmt_s(r.objective_s)} "
        f"bound={fmt_s(r.best_bound_s)} gap={r.gap:.2%} wall={fmt_s(r.wall_s)}"
    ]
    if r.moves:
        mv = r.moves
        bound = "none" if mv.max_moves is None else mv.max_moves
        lines.append(
            f"  moves moved={mv.moved_tables} items={mv.moved_items} kept={mv.kept_tables} "
            f"free={mv.free_tables} max={bound}"
        )
    return lines


def print_module(m: Module) -> str:
    w, t = m.workload, m.target
    lines = [f"module @{printable(w.name)} target=@{printable(t.name)} cores={t.cores} batch={w.batch_size} {{"]
    lines.extend(_table_line(tab) for tab in w.tables)
    for p in m.table_profiles or ():
        lines.append(
            f"  profile @{p.table} lookups={p.lookups_per_batch} distinct={p.distinct_rows_per_batch:.1f} "
            f"cache_share={fmt_bytes(p.cache_share_bytes)}"
        )
    for c in m.candidates or ():
        cands = " ".join(
            f"{x.strategy.value}={fmt_s(x.cost.total_s)}{'' if x.fits_local or not x.strategy.preloaded else '[no-fit]'}"
            for x in c.candidates
        )
        lines.append(f"  candidates @{c.table} {cands}")
    for placed in m.previous or ():
        shape = f"{placed.strategy.value}/{placed.mode.value}x{placed.parts}"
        lines.append(f"  previous @{placed.table} {shape} cores={','.join(map(str, placed.cores))}")
    for entry in m.options or ():
        opts = " ".join(f"{o.label}:{fmt_s(o.part_s)}" for o in entry.options)
        lines.append(f"  options @{entry.table} {opts}")
    for it in m.items or ():
        deps = f" after={','.join(f'%{d}' for d in it.depends_on)}" if it.depends_on else ""
        lines.append(
            f"  %{it.id} = {it.output} @{it.table} {it.strategy.value} rows=[{it.rows[0]},{it.rows[1]}) "
            f"samples=[{it.samples[0]},{it.samples[1]}) core={it.core} local={fmt_bytes(it.local_bytes)} "
            f"cost={fmt_s(it.cost.total_s)}{deps}"
        )
    for line in m.uneven_lines or ():
        lines.append(
            f"  uneven @{line.table} {line.strategy.value} fixed={fmt_s(line.fixed_s)} "
            f"per_sample={fmt_s(line.per_sample_s)}"
        )
    for s in m.schedules or ():
        order = " ".join(f"%{i}" for i in s.items)
        end = fmt_s(s.finish_s[-1]) if s.finish_s else "0"
        lines.append(f"  core {s.core} busy={fmt_s(s.busy_s)} end={end}: {order}")
    if m.solver:
        lines.extend(_solver_lines(m.solver))
    if m.lower_bound_s is not None:
        lines.append(f"  lower_bound={fmt_s(m.lower_bound_s)}")
    lines.append("}")
    return "\n".join(lines)
