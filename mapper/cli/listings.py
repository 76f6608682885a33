"""The listings: `embmap passes`, `embmap targets` (with the cost profile a compile will use for each) and
`embmap workloads`. Names and texts from the target and workload files are printed with `printable`."""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_passes(args: argparse.Namespace) -> int:
    from embmap.mapper.pipelines import PIPELINES
    from embmap.passes import REGISTRY
    from embmap.passes.base import option_fields

    entries: list[dict[str, Any]] = []
    for name, cls in sorted(REGISTRY.items()):
        opts = {f.name.replace("_", "-"): _default_text(f) for f in option_fields(cls)}
        entries.append({"name": name, "summary": cls.summary, "options": opts})
    if args.json:
        print(json.dumps({"passes": entries, "pipelines": {k: v[0] for k, v in PIPELINES.items()}}, indent=1))
        return 0
    print("passes:")
    for e in entries:
        shown = ", ".join(f"{k}={v}" for k, v in e["options"].items())
        print(f"  {e['name']:<16} {e['summary']}" + (f"\n  {'':<16} options: {shown}" if shown else ""))
    print("\npipelines:")
    for name, (text, doc) in PIPELINES.items():
        print(f"  {name:<12} {doc}\n  {'':<12} {text}")
    return 0


def _default_text(field: object) -> str:
    import dataclasses

    assert isinstance(field, dataclasses.Field)
    value = field.default
    if isinstance(value, tuple):
        return ":".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def cmd_targets(args: argparse.Namespace) -> int:
    """The built-in targets, each with its memories and the cost profile a compile for it uses without
    --profile (`mapper.profiles.profile_choice`). --json prints the target files alone."""
    from embmap.ir.printer import fmt_bytes, printable
    from embmap.ir.targets import BUILTIN_TARGETS
    from embmap.mapper.profiles import profile_choice

    targets = [f() for f in BUILTIN_TARGETS.values()]
    if args.json:
        print(json.dumps([t.model_dump() for t in targets], indent=1))
        return 0
    for t in targets:
        mems = [t.local, t.scratch, *([t.shared_cache] if t.shared_cache else []), t.main]
        print(f"{printable(t.name):<10} {t.cores} cores  {printable(t.description)}")
        print("           " + ", ".join(f"{printable(m.name)} {fmt_bytes(m.capacity_bytes)}" for m in mems))
        why, detail = profile_choice(t).lines()
        print(f"           cost profile: {printable(why)}")
        print(f"                         {printable(detail)}")
    return 0


def cmd_workloads(args: argparse.Namespace) -> int:
    from embmap.ir.printer import fmt_bytes, printable
    from embmap.mapper.workloads import builtin_names, builtin_workload

    rows: list[dict[str, Any]] = []
    for name in builtin_names():
        w = builtin_workload(name)
        e = w.effective()
        rows.append(
            {
                "name": name,
                "tables": len(w.tables),
                "bytes": w.total_bytes,
                "planned_bytes": e.total_bytes,
                "batch_size": w.batch_size,
                "row_cap": w.row_cap,
                "title": w.title,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        cap = f" (row cap {r['row_cap']:,}: {fmt_bytes(r['planned_bytes'])})" if r["row_cap"] else ""
        name, title = printable(r["name"]), printable(r["title"])
        print(f"{name:<20} {r['tables']:>3} tables {fmt_bytes(r['bytes']):>9}{cap}  {title}")
    return 0
