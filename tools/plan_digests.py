"""Digests of the plans of every built-in workload, to show that a change of code leaves every plan as it was.

Compiles each built-in workload for `ascend910` and `cpu` (rows capped at 1M, as `embmap bench` runs them) with
the default pipeline and solver settings and
records, per plan, a SHA-256 of its JSON with what may differ between runs left out (the solver's wall time,
the tool version). `--check FILE` compiles again and lists every plan whose digest moved.

Usage: python tools/plan_digests.py -o DIGESTS.json        (record)
       python tools/plan_digests.py --check DIGESTS.json   (compare; exit status 1 if any plan moved)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from embmap.ir.output import write_text_atomic
from embmap.ir.plan import ExecutionPlan
from embmap.mapper import compile
from embmap.mapper.workloads import builtin_names

TARGETS = {"ascend910": None, "cpu": 1_000_000}  # target -> row cap (cpu: what fits this machine's memory)


def digest(plan: ExecutionPlan) -> str:
    data = json.loads(plan.model_dump_json())
    data.pop("generator", None)
    data["solver"].pop("wall_s", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def digests() -> dict[str, str]:
    return {f"{w} @ {t}": digest(compile(w, t, row_cap=cap)) for w in builtin_names() for t, cap in TARGETS.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("-o", "--output", type=Path)
    group.add_argument("--check", type=Path)
    args = parser.parse_args()
    now = digests()
    if args.output:
        write_text_atomic(args.output, json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(now)} plan digests to {args.output}")
        return 0
    then = json.loads(args.check.read_text(encoding="utf-8"))
    moved = [k for k in sorted(then) if now.get(k) != then[k]]
    for k in moved:
        print(f"moved: {k}")
    print(f"{len(then) - len(moved)} of {len(then)} plans identical")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
