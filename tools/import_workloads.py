"""Regenerate mapper/workloads/data/*.json from the dataset table configurations in ../shared/workloads.

Usage: python tools/import_workloads.py [SHARED_WORKLOADS_DIR]
Keeps each dataset's source, notes and assumptions; adds the planning defaults stated in ROW_CAPS and
DEFAULT_BATCH, and records them as assumptions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_BATCH = 1024
# Criteo-1TB tables (up to 49M rows x 128 fp32 = 25 GB each; 85-96 GiB in all) exceed one device's memory.
# Ids are hashed into at most 10M rows per table, as DLRM's --max-ind-range does, so that each model fits a
# 32 GiB device; the published cardinalities are kept in the table list and the cap is applied on lowering.
ROW_CAPS = {"criteo-1tb-dlrmv2": 10_000_000, "criteo-1tb-t3": 10_000_000}


def convert(doc: dict) -> dict:
    key = doc["key"]
    assumptions = list(doc.get("assumptions", []))
    assumptions.append(f"batch size {DEFAULT_BATCH} samples (the dataset fixes none; override with --batch)")
    out = {
        "name": key,
        "title": doc.get("name", key),
        "batch_size": DEFAULT_BATCH,
        "distribution": {"kind": "uniform"},
    }
    if key in ROW_CAPS:
        out["row_cap"] = ROW_CAPS[key]
        assumptions.append(
            f"ids hashed into at most {ROW_CAPS[key]:,} rows per table (DLRM --max-ind-range) so the model fits "
            "one 32 GiB device; override with --row-cap"
        )
    out |= {
        "source": doc.get("source", ""),
        "notes": doc.get("notes", ""),
        "assumptions": assumptions,
        "tables": [
            {"name": t["name"], "rows": t["rows"], "dim": t["dim"], "dtype": "fp32", "pooling": t["pooling"]}
            for t in doc["tables"]
        ],
    }
    return out


def main() -> None:
    src = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".." / "shared" / "workloads"
    )
    dst = Path(__file__).resolve().parents[1] / "mapper" / "workloads" / "data"
    for path in sorted(src.glob("*.json")):
        doc = convert(json.loads(path.read_text()))
        (dst / path.name).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {dst / path.name} ({len(doc['tables'])} tables)")


if __name__ == "__main__":
    main()
