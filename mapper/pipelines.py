"""Named pipelines: ours and the baselines, all built from the same passes.

A pipeline is composed from phase functions that each return pass text, so the baselines differ from ours
only where they are meant to: which strategies they may use, how they partition, how they place.
"""

from __future__ import annotations

from embmap.ir.errors import PipelineError

ANALYSIS = "profile"


def _pipeline(strategy: str, partition: str, assign: str) -> str:
    return ",".join([ANALYSIS, strategy, partition, assign, "schedule", "verify"])


PIPELINES: dict[str, tuple[str, str]] = {
    "embmap": (
        _pipeline("select-strategy", "partition", "assign-cores,balance,pack"),
        "ours: all four strategies, replicate / split samples / shard rows, CP-SAT core assignment, uneven cuts "
        "of tables too long for one core, and a pattern dive where a plan is still over 1% from its bound",
    ),
    "default": (
        _pipeline("select-strategy{strategies=GM}", "partition{policy=split-all}", "assign-cores{method=greedy}"),
        "default compiler: every table GM, the batch split evenly across all cores for every table",
    ),
    "round-robin": (
        _pipeline("select-strategy", "partition{policy=whole}", "assign-cores{method=round-robin}"),
        "whole tables dealt to cores in turn, each with its cheapest single-core strategy that fits",
    ),
    "greedy": (
        _pipeline("select-strategy", "partition", "assign-cores{method=greedy}"),
        "our strategies and partitions, longest-first placement, no solver",
    ),
}
BASELINES = ("default", "round-robin", "greedy")


def pipeline_for(name_or_text: str) -> str:
    """A named pipeline's text, or the text itself if it is a pass list."""
    if name_or_text in PIPELINES:
        return PIPELINES[name_or_text][0]
    if "," in name_or_text or "{" in name_or_text or name_or_text in _pass_names():
        return name_or_text
    raise PipelineError(
        "pipeline", f"unknown pipeline {name_or_text!r}", f"use one of {', '.join(PIPELINES)} or a pass list"
    )


def _pass_names() -> set[str]:
    from embmap.passes import REGISTRY

    return set(REGISTRY)
