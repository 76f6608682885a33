"""The built-in workload library: public datasets' tables, and a seeded synthetic generator.

`resolve_workload` accepts a built-in name, a `synthetic:key=value,...` recipe, or a YAML/JSON file path.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from embmap.ir.errors import SpecError
from embmap.ir.loader import parse_document, read_document, validate
from embmap.ir.spec import WorkloadSpec
from embmap.mapper.workloads.synthetic import SYNTHETIC_PRESETS, parse_recipe, synthetic

DATASETS = (
    "criteo-1tb-t3",
    "criteo-1tb-dlrmv2",
    "avazu",
    "kuairec-big",
    "taobao-ub",
    "tenrec-qb-article",
)


def builtin_names() -> tuple[str, ...]:
    return DATASETS + tuple(SYNTHETIC_PRESETS)


def builtin_workload(name: str) -> WorkloadSpec:
    if name in SYNTHETIC_PRESETS:
        return synthetic(**SYNTHETIC_PRESETS[name])
    if name not in DATASETS:
        raise SpecError(
            "workload", f"unknown built-in workload {name!r}", f"use one of {', '.join(builtin_names())} or a file path"
        )
    text = resources.files("embmap.mapper.workloads").joinpath("data", f"{name}.json").read_text(encoding="utf-8")
    return validate(WorkloadSpec, parse_document(text, True, f"workload {name}"), f"workload {name}")


def resolve_workload(ref: str) -> WorkloadSpec:
    if ref in builtin_names():
        return builtin_workload(ref)
    if ref.startswith("synthetic:") or ref == "synthetic":
        return synthetic(**parse_recipe(ref.partition(":")[2]))
    path = Path(ref)
    if not path.exists():
        raise SpecError(
            "workload",
            f"{ref!r} is neither a built-in workload nor a file",
            f"use one of {', '.join(builtin_names())}, synthetic:tables=N,..., or an existing path",
        )
    return validate(WorkloadSpec, read_document(path, "workload"), "workload")
