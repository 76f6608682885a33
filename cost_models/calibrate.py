"""Fit the cost model's parameters to measured work items by non-negative least squares.

The analytic model is linear in its parameters (`cost_models.analytic.item_terms`), so a measured item is one
linear equation: sum over parameters of amount x coefficient = measured seconds, where the coefficient is the
parameter itself for latencies (`_s`) and its inverse for bandwidths (`_bytes_per_s`). `fit_profile` solves
these equations for the coefficients, each row divided by its measured time so that small and large items
weigh alike (relative error), with every coefficient kept non-negative (a cost cannot be negative). The loss
is Huber's by default (`HUBER_K`): squares for small relative errors, linear beyond, so that items measured
while another tenant slowed their core (a shared machine's noise is one-sided) do not pull every parameter
up; `loss="squares"` gives plain least squares. Every `holdout_every`-th measurement is held out of the fit,
so the resulting `FitReport` says how well the profile predicts items it has not seen. The format of the
measurements, and the fit, are explained in docs/calibration.md.

Measurements CSV (from any runtime; one measured work item per line):

    # comment lines and blank lines are ignored
    strategy,rows,dim,dtype,pooling,batch_size,row_lo,row_hi,sample_lo,sample_hi,distribution,measured_s
    L1,5000,32,fp16,4,1024,0,5000,0,512,zipf:1.05,1.8e-05

- a header row is required; it names the columns in any order, `cache_share_bytes` is optional
- `strategy`: GM, L1, GM-UB or L1-UB
- `rows`, `dim`, `dtype` (fp32, fp16 or int8), `pooling`: the table; `batch_size`: the batch it served
- `row_lo,row_hi` and `sample_lo,sample_hi`: the item's half-open row and sample ranges
- `distribution`: `uniform`, `zipf:ALPHA` or `hot-set:ROWS:MASS`
- `measured_s`: seconds of the one item on one core (the median over repetitions)
- `table`, `plan` (optional): the table's name and the plan the item ran in; the tables of one plan share
  the shared cache (`cost_models.analytic.cache_shares`); an empty plan means the table ran alone
- `cache_share_bytes` (optional): the bytes of the shared cache the table could use, overriding the share
  computed from its plan
- `first_on_core` (optional): 1 (default) if the item was the first its core ran in the batch, else 0
- `core` (optional): the core the item ran on in its plan; items of one plan and core take turns in that
  core's private cache (`neighbour_bytes_of`); empty means the item was alone on its core

Without a `table` column, the table of the measurement on line N is named `mN`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from embmap.cost_models.analytic import (
    CacheState,
    ItemShape,
    coefficient,
    footprint_bytes,
    footprint_pages,
    item_terms,
    shared_cache_state,
    table_histogram,
    together_cache_share,
)
from embmap.ir.cost_profile import CostProfile, FitReport
from embmap.ir.errors import SpecError
from embmap.ir.loader import write_text_atomic
from embmap.ir.module import TableProfile, reads_together
from embmap.ir.plan import Strategy
from embmap.ir.spec import DType, HotSet, TableSpec, TargetSpec, TLBSpec, Uniform, Zipf

COLUMNS = (
    "strategy",
    "rows",
    "dim",
    "dtype",
    "pooling",
    "batch_size",
    "row_lo",
    "row_hi",
    "sample_lo",
    "sample_hi",
    "distribution",
    "measured_s",
)
OPTIONAL_COLUMNS = ("table", "plan", "cache_share_bytes", "first_on_core", "core")
NEGLIGIBLE_COEFFICIENT = 1e-18  # seconds per byte below which a bandwidth is stored as NEGLIGIBLE_BANDWIDTH
NEGLIGIBLE_BANDWIDTH = 1e18
CONFOUNDED_SV = 1e-9  # singular values below this fraction of the largest make a design rank deficient
LOSSES = ("huber", "squares")
# Huber's threshold, in relative error: a point off by more than this weighs as k / |error| of one that fits.
# 0.15 is 1.345 (the usual 95%-efficiency constant) times the spread of the shipped fit's errors (a robust
# standard deviation, 1.4826 x MAD, of about 0.11).
HUBER_K = 0.15
IRLS_MAX_ITER = 50  # reweighting rounds of the Huber fit (it settles in 10-20 on the shipped measurements)
IRLS_TOL = 1e-4  # the weights move less than this: settled
DISTRIBUTION_FIX = "write uniform, zipf:ALPHA (e.g. zipf:1.05) or hot-set:ROWS:MASS (e.g. hot-set:16:0.9)"

Problem = tuple[str, str, str]  # (field, problem, fix), the field a CSV column name


@dataclass(frozen=True)
class Measurement:
    """One work item measured on one core: what was run, and how long it took."""

    strategy: Strategy
    table: TableSpec  # with `distribution` set
    batch_size: int
    rows: tuple[int, int]  # half-open row range
    samples: tuple[int, int]  # half-open sample range
    measured_s: float  # median over repetitions
    cache_share_bytes: float | None = None  # None: the share its plan's tables leave it (all of it if alone)
    first_on_core: bool = True  # the first item its core ran in the batch: it pays the core's start-up
    plan: str = ""  # measurements of one plan share the cache; "" means the table ran alone
    core: int | None = None  # the core it ran on in its plan; None: alone on its core


@dataclass(frozen=True)
class CalibrationResult:
    """A fitted profile, its prediction for every measurement, and which measurements it was not fitted on."""

    profile: CostProfile
    predicted_s: tuple[float, ...]
    held_out: tuple[bool, ...]
    report: FitReport


# The model's terms for a measurement --------------------------------------------------------------------


def measurement_terms(
    m: Measurement,
    target: TargetSpec,
    cache: CacheState | None = None,
    neighbour_bytes: float = 0.0,
    neighbour_pages: float = 0.0,
    window: float = 1.0,
) -> dict[str, float]:
    """Parameter name -> total amount of the measured item, exactly as the cost model would predict it, given
    what the shared cache holds of its table (default: what it holds with the table alone in the whole
    cache), the bytes and pages its core's other items read (default: none, alone on its core) and the
    profile's `main_window_rows` (`window`)."""
    _require_valid(m, "measurement")
    table = m.table
    lookups = m.batch_size * table.pooling
    if cache is None:
        cache = cache_states_of([m], target, 1.0)[0]
    stats = TableProfile(
        table=table.name,
        bytes=table.bytes,
        lookups_per_batch=lookups,
        distinct_rows_per_batch=table_histogram(table).expected_distinct(lookups),
        cache_share_bytes=cache.share_bytes,
        walk_hit_ratio=cache.walk_hit_ratio,
        neighbour_bytes=neighbour_bytes,
        neighbour_pages=neighbour_pages,
    )
    amounts: dict[str, float] = {}
    for term in item_terms(ItemShape(m.strategy, m.rows, m.samples), table, stats, target, window):
        amounts[term.param] = amounts.get(term.param, 0.0) + max(0.0, term.amount)  # no negative rounding dust
    if m.first_on_core:
        amounts["core_start_s"] = 1.0
    return amounts


def cache_states_of(measurements: Sequence[Measurement], target: TargetSpec, fraction: float) -> list[CacheState]:
    """What `fraction` of the shared cache holds of each measured table, as the `profile` pass computes it
    for a plan: with the other tables of its plan (the measurements with the same `plan`), or alone; a table
    with a part on every core of the target, read by the cores together, gets the better of that and the
    cache to itself (`TableProfile.read_together`). A given `cache_share_bytes` replaces the computed row
    share, scaled by the fraction."""
    capacity = (target.shared_cache.capacity_bytes if target.shared_cache else 0) * fraction
    plans: dict[str, dict[str, tuple[TableSpec, int]]] = {}
    for m in measurements:
        if m.plan:
            plans.setdefault(m.plan, {}).setdefault(m.table.name, (m.table, m.batch_size))
    parts = Counter((m.plan, m.table.name) for m in measurements if m.plan)
    states: dict[str, dict[str, CacheState]] = {}
    for plan, tables in plans.items():
        specs = [t for t, _ in tables.values()]
        batch = next(iter(tables.values()))[1]
        states[plan] = dict(zip(tables, shared_cache_state(capacity, specs, batch, target.tlb), strict=True))
        for name, (table, _) in tables.items():
            if len(tables) > 1 and reads_together(parts[plan, name], target.cores):  # as Module.part_profile
                state = states[plan][name]
                share = together_cache_share(capacity, table, batch, target.tlb, state.share_bytes)
                states[plan][name] = dataclasses.replace(state, share_bytes=share)
    out = []
    for m in measurements:
        state = (
            states[m.plan][m.table.name]
            if m.plan
            else shared_cache_state(capacity, [m.table], m.batch_size, target.tlb)[0]
        )
        if m.cache_share_bytes is not None:
            state = dataclasses.replace(state, share_bytes=m.cache_share_bytes * fraction)
        out.append(state)
    return out


def neighbour_bytes_of(measurements: Sequence[Measurement]) -> list[float]:
    """Per measurement, the bytes the other items of its core read per batch: the measurements of the same
    plan and core (`cost_models.analytic.footprint_bytes`); 0 for an item without a core (alone)."""
    return _neighbours([footprint_bytes(m.table, m.rows, m.samples) for m in measurements], measurements)


def neighbour_pages_of(measurements: Sequence[Measurement], tlb: TLBSpec | None) -> list[float]:
    """Per measurement, the pages the other items of its core touch per batch
    (`cost_models.analytic.footprint_pages`); 0 for an item without a core (alone) or a target without a TLB."""
    return _neighbours([footprint_pages(m.table, m.rows, m.samples, tlb) for m in measurements], measurements)


def _neighbours(own: list[float], measurements: Sequence[Measurement]) -> list[float]:
    """Per measurement, the sum of `own` over the other measurements of its plan and core."""
    cores: dict[tuple[str, int], float] = {}
    for m, b in zip(measurements, own, strict=True):
        if m.core is not None:
            cores[m.plan, m.core] = cores.get((m.plan, m.core), 0.0) + b
    return [0.0 if m.core is None else cores[m.plan, m.core] - b for m, b in zip(measurements, own, strict=True)]


def _problem(m: Measurement) -> Problem | None:
    """What is wrong with a measurement, if anything, named by its CSV column."""
    if m.table.distribution is None:
        return "distribution", "is not set", "give the table an explicit distribution, e.g. uniform"
    if m.batch_size <= 0:
        return "batch_size", f"must be positive, got {m.batch_size}", "give the batch size the item served"
    ranges = (("row", m.rows, m.table.rows, "table"), ("sample", m.samples, m.batch_size, "batch"))
    for name, (lo, hi), end, whole in ranges:
        if lo < 0:
            return f"{name}_lo", f"must be at least 0, got {lo}", f"{name}s are numbered from 0"
        if hi > end:
            return f"{name}_hi", f"{hi} is past the end of the {whole} ({end} {name}s)", f"use at most {end}"
        if hi <= lo:
            return (
                f"{name}_hi",
                f"must be greater than {name}_lo ({lo}), got {hi}: the range is empty",
                f"give a non-empty half-open range {name}_lo < {name}_hi",
            )
    if not (math.isfinite(m.measured_s) and m.measured_s > 0):
        return "measured_s", f"must be a positive number, got {m.measured_s!r}", "write seconds, e.g. 1.2e-05"
    share = m.cache_share_bytes
    if share is not None and not (math.isfinite(share) and share >= 0):
        return "cache_share_bytes", f"must be a non-negative number, got {share!r}", "write bytes, or leave it empty"
    return None


def _require_valid(m: Measurement, where: str) -> None:
    problem = _problem(m)
    if problem is not None:
        field, what, fix = problem
        raise SpecError(f"{where}.{field}", what, fix)


# Non-negative least squares -------------------------------------------------------------------------------


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """x >= 0 minimizing ||a x - b||: the Lawson-Hanson active-set method, numpy only.

    Variables move from the active set (held at 0) to the passive set (free) one at a time, the one whose
    gradient most wants to grow first; when the unconstrained solution on the passive set turns a variable
    negative, the step is cut short where the first one reaches 0 and that one returns to the active set.
    Raises RuntimeError after `max_iter` steps (default 10 x columns + 50) without converging.
    """
    a, b = _nnls_inputs(a, b)
    norms = np.linalg.norm(a, axis=0)
    scale = np.where(norms > 0, norms, 1.0)  # x >= 0 is unchanged by positive column scaling; conditioning is not
    return _lawson_hanson(a / scale, b, 10 * a.shape[1] + 50 if max_iter is None else max_iter) / scale


def _lawson_hanson(a: np.ndarray, b: np.ndarray, limit: int) -> np.ndarray:
    """The active-set iteration on columns of norm 1 (or 0)."""
    n = a.shape[1]
    tol = 10 * np.finfo(float).eps * max(a.shape) * float(np.linalg.norm(b))
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    rejected = np.zeros(n, dtype=bool)  # entered and left at once (rounding) since x last moved: skip them
    steps = 0
    while True:
        w = a.T @ (b - a @ x)
        candidates = ~passive & ~rejected & (w > tol)
        if not candidates.any():
            return x
        j = int(np.argmax(np.where(candidates, w, -np.inf)))
        passive[j] = True
        x, steps = _nnls_inner(a, b, x, passive, _step(steps, limit), limit)
        if passive[j]:
            rejected[:] = False
        else:
            rejected[j] = True


def _nnls_inner(
    a: np.ndarray, b: np.ndarray, x: np.ndarray, passive: np.ndarray, steps: int, limit: int
) -> tuple[np.ndarray, int]:
    """Solve on the passive set, stepping back towards x while any passive variable would go negative.

    Updates `passive` in place; returns the new feasible x and the steps taken so far (outer and inner)."""
    s = _solve_passive(a, b, passive)
    while (s[passive] < 0).any():
        steps = _step(steps, limit)
        neg = passive & (s < 0)
        ratios = x[neg] / (x[neg] - s[neg])
        x = x + float(ratios.min()) * (s - x)
        x[np.flatnonzero(neg)[int(np.argmin(ratios))]] = 0.0  # the first to reach 0 leaves, whatever the rounding
        passive &= x > 0
        x[~passive] = 0.0
        s = _solve_passive(a, b, passive)
    return s, steps


def _step(steps: int, limit: int) -> int:
    if steps >= limit:
        raise RuntimeError(f"nnls did not converge in {limit} iterations")
    return steps + 1


def _solve_passive(a: np.ndarray, b: np.ndarray, passive: np.ndarray) -> np.ndarray:
    """Unconstrained least squares on the passive columns (minimum norm if they are dependent), 0 elsewhere."""
    s = np.zeros(a.shape[1])
    if passive.any():
        s[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
    return s


def _nnls_inputs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 1 or a.shape[0] != b.shape[0]:
        raise ValueError(f"nnls needs a 2-d matrix and a vector of as many rows, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("nnls needs finite inputs")
    return a, b


# Fitting a profile --------------------------------------------------------------------------------------


def fit_profile(
    measurements: Sequence[Measurement],
    target: TargetSpec,
    base: CostProfile,
    *,
    command: str,
    machine: str = "",
    holdout_every: int = 5,
    fixed: Mapping[str, float] | None = None,
    loss: str = "huber",
) -> CalibrationResult:
    """Fit `base`'s parameters to the measurements (relative errors, non-negative coefficients; Huber's loss
    by iteratively reweighted least squares, or plain squares with `loss="squares"`).

    Measurement i is held out when i % holdout_every == 2 (none when holdout_every is 0). Parameters in
    `fixed` (profile units) and parameters the fitted measurements do not exercise are not fitted; the
    latter keep their base value. The model is not linear in two parameters, the effective cache fraction
    and the main-memory window; unless `fixed` holds them, they are chosen by a coordinate search over their
    grids around the linear fit: the fraction at window 1 (the linear model), the window at that fraction,
    then the fraction again at that window, each (fraction, window) judged by the loss of its linear fit. A
    window that changes no prediction (no measured read from main memory) stays 1.
    """
    if loss not in LOSSES:
        raise SpecError("loss", f"unknown loss {loss!r}", f"use one of {', '.join(LOSSES)}")
    fixed = dict(fixed or {})
    fraction = fixed.pop("cache_effective_fraction", None)
    window = fixed.pop("main_window_rows", None)
    if window is not None and not 1.0 <= window <= 64.0:
        raise SpecError(
            "fixed.main_window_rows",
            f"must be between 1 and 64, got {window}",
            "give the consecutive reads whose misses a core overlaps, e.g. 2 (1: the linear model)",
        )
    if fraction is None and target.shared_cache is None:
        fraction = base.cache_effective_fraction
    fractions = CACHE_FRACTIONS if fraction is None else (float(fraction),)
    windows = MAIN_WINDOWS if window is None else (float(window),)
    searched = {
        name: f"fit: grid search over {len(grid)} values ({command})"
        if len(grid) > 1
        else f"fixed in the fit ({command})"
        for name, grid in (("cache_effective_fraction", fractions), ("main_window_rows", windows))
    }
    fits: dict[tuple[float, float], tuple[CalibrationResult, float]] = {}

    def fit(f: float, w: float) -> tuple[CalibrationResult, float]:
        if (f, w) not in fits:
            fits[f, w] = _fit_linear(
                measurements, target, base, (f, w), searched, command, holdout_every, fixed, machine, loss
            )
        return fits[f, w]

    f = min(fractions, key=lambda f: fit(f, windows[0])[1])
    w = min(windows, key=lambda w: fit(f, w)[1])
    f = min(fractions, key=lambda f: fit(f, w)[1])
    return fit(f, w)[0]


CACHE_FRACTIONS = (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12, 0.08, 0.05, 0.03)
MAIN_WINDOWS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)


def _fit_linear(
    measurements: Sequence[Measurement],
    target: TargetSpec,
    base: CostProfile,
    nonlinear: tuple[float, float],
    searched: Mapping[str, str],
    command: str,
    holdout_every: int,
    fixed: Mapping[str, float],
    machine: str,
    loss: str,
) -> tuple[CalibrationResult, float]:
    """The linear fit for one (effective cache fraction, main-memory window), and its training loss over the
    relative errors; `searched` gives the two parameters' sources."""
    fraction, window = nonlinear
    fixed_coef = _fixed_coefficients(fixed)
    held = _held_out(len(measurements), holdout_every)
    names = CostProfile.parameter_names()
    amounts = _amounts(measurements, target, fraction, window)
    measured = np.array([m.measured_s for m in measurements], dtype=float)
    a, b = amounts[~held], measured[~held]
    free = [p for j, p in enumerate(names) if a[:, j].any() and p not in fixed_coef]
    _require_enough_points(len(b), free)
    offset = a @ np.array([fixed_coef.get(p, 0.0) for p in names])
    scaled, norms = _relative_design(a[:, [names.index(p) for p in free]], b)
    coefs = _irls(scaled, (b - offset) / b, loss) / norms
    how = f"{'Huber' if loss == 'huber' else 'least-squares'} NNLS on {len(b)} points"
    profile = _fitted_profile(
        base, target, dict(zip(free, coefs, strict=True)), _confounded(scaled, free), fixed, how, command
    )
    profile = profile.model_copy(
        update={
            "cache_effective_fraction": fraction,
            "main_window_rows": window,
            "sources": profile.sources
            | {
                "cache_effective_fraction": searched["cache_effective_fraction"],
                "main_window_rows": searched["main_window_rows"],
            },
        }
    )
    predicted = amounts @ np.array([coefficient(profile, p) for p in names])
    report = _report(predicted, measured, held, command, machine)
    objective = float(_loss(((predicted - measured) / measured)[~held], loss).sum())
    result = CalibrationResult(
        profile.model_copy(update={"fit": report}),
        tuple(float(v) for v in predicted),
        tuple(bool(h) for h in held),
        report,
    )
    return result, objective


def _loss(errors: np.ndarray, loss: str) -> np.ndarray:
    """Each relative error's loss: Huber's (squares up to HUBER_K, linear beyond), or its square."""
    if loss == "squares":
        return errors**2
    e = np.abs(errors)
    return np.where(e <= HUBER_K, e**2, 2 * HUBER_K * e - HUBER_K**2)


def _irls(scaled: np.ndarray, target: np.ndarray, loss: str) -> np.ndarray:
    """min over x >= 0 of the loss of scaled @ x - target: plain NNLS for squares; for Huber, NNLS again and
    again with each row weighted by min(1, k / |its error|), until the weights settle."""
    x = _solve(scaled, target)
    if loss == "squares" or scaled.shape[1] == 0:
        return x
    weights = np.ones(len(target))
    for _ in range(IRLS_MAX_ITER):
        error = np.abs(scaled @ x - target)
        new = np.sqrt(np.minimum(1.0, HUBER_K / np.maximum(error, 1e-300)))  # rows scale by the root
        if np.max(np.abs(new - weights)) < IRLS_TOL:
            break
        weights = new
        x = _solve(scaled * weights[:, None], target * weights)
    return x


def _held_out(n: int, every: int) -> np.ndarray:
    """Which of n measurements the fit leaves out: i % every == 2, or none when every is 0."""
    if every < 0:
        raise SpecError("holdout_every", f"must be 0 or more, got {every}", "use 0 to hold nothing out")
    return np.array([every > 0 and i % every == 2 for i in range(n)], dtype=bool)


def _amounts(
    measurements: Sequence[Measurement], target: TargetSpec, cache_fraction: float = 1.0, window: float = 1.0
) -> np.ndarray:
    """The design matrix: one row per measurement, one column per profile parameter (amounts, not seconds)."""
    names = CostProfile.parameter_names()
    for i, m in enumerate(measurements):
        _require_valid(m, f"measurements[{i}]")
    states = cache_states_of(measurements, target, cache_fraction)
    neighbours = neighbour_bytes_of(measurements)
    pages = neighbour_pages_of(measurements, target.tlb)
    rows = []
    for m, state, others, other_pages in zip(measurements, states, neighbours, pages, strict=True):
        terms = measurement_terms(m, target, state, others, other_pages, window)
        rows.append([terms.get(p, 0.0) for p in names])
    return np.array(rows, dtype=float).reshape(len(rows), len(names))


def _fixed_coefficients(fixed: Mapping[str, float]) -> dict[str, float]:
    """Caller-fixed parameters as seconds per unit amount, each checked against the profile's rules."""
    names = CostProfile.parameter_names()
    out: dict[str, float] = {}
    for name, value in fixed.items():
        if name not in names:
            raise SpecError(f"fixed.{name}", "is not a cost-model parameter", f"use one of {', '.join(names)}")
        bandwidth = name.endswith("_bytes_per_s")
        if not math.isfinite(value) or value < 0 or (bandwidth and value == 0):
            kind = "positive" if bandwidth else "non-negative"
            raise SpecError(
                f"fixed.{name}", f"must be a {kind} number, got {value!r}", "give it in the profile's units"
            )
        out[name] = 1.0 / value if bandwidth else float(value)
    return out


def _require_enough_points(points: int, free: list[str]) -> None:
    if points == 0 or points < len(free):
        raise SpecError(
            "calibration",
            f"{points} measurements to fit {len(free)} free parameters ({', '.join(free) or 'none'})",
            "measure more work items (vary strategy, table size, dim, batch and pooling) or fix some parameters",
        )


def _relative_design(amounts: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows divided by the measured time (relative error), then columns by their norm (conditioning: amounts
    range from one item to gigabytes). Returns the scaled matrix and the column norms to undo the scaling."""
    rel = amounts / measured[:, None]
    norms = np.linalg.norm(rel, axis=0)
    return rel / np.where(norms > 0, norms, 1.0), norms


def _solve(scaled: np.ndarray, target: np.ndarray) -> np.ndarray:
    if scaled.shape[1] == 0:
        return np.zeros(0)
    try:
        return nnls(scaled, target)
    except RuntimeError as exc:
        raise SpecError(
            "calibration", f"the fit did not converge: {exc}", "look for outliers in the measurements"
        ) from None


def _confounded(scaled: np.ndarray, free: list[str]) -> dict[str, list[str]]:
    """Parameters the measurements cannot tell apart: those that share a (near) null vector of the design."""
    if not free:
        return {}
    _, sv, vt = np.linalg.svd(scaled, full_matrices=True)
    sv = np.concatenate([sv, np.zeros(len(free) - len(sv))])
    out: dict[str, list[str]] = {}
    for v in vt[sv <= CONFOUNDED_SV * max(float(sv[0]), 1e-300)]:
        involved = [p for p, c in zip(free, v, strict=True) if abs(c) > 1e-3 * float(np.abs(v).max())]
        for p in involved:
            out.setdefault(p, []).extend(q for q in involved if q != p and q not in out[p])
    return out


def _fitted_profile(
    base: CostProfile,
    target: TargetSpec,
    coefs: dict[str, float],
    confounded: dict[str, list[str]],
    fixed: Mapping[str, float],
    how: str,
    command: str,
) -> CostProfile:
    """The base profile with fitted and fixed values substituted, and every value's source written down."""
    values: dict[str, float] = {}
    sources = dict(base.sources)
    for name in CostProfile.parameter_names():
        if name in fixed:
            values[name] = float(fixed[name])
            sources[name] = f"fixed at {float(fixed[name])!r} for the fit ({command})"
        elif name in coefs:
            values[name], negligible = _profile_value(name, coefs[name])
            sources[name] = f"fit: {how} ({command})"
            if negligible:
                sources[name] += "; the fit found it negligible"
            if name in confounded:
                sources[name] += f"; not separable from {', '.join(confounded[name])} by these measurements"
        else:
            sources[name] = f"not exercised by the measurements; kept from {base.sources.get(name, 'the base profile')}"
    data = base.model_dump() | values | {"target": target.name, "calibrated": True, "sources": sources, "fit": None}
    return CostProfile.model_validate(data)


def _profile_value(name: str, coef: float) -> tuple[float, bool]:
    """A coefficient in the profile's units, and whether the fit found the parameter negligible."""
    if name.endswith("_bytes_per_s"):
        if coef < NEGLIGIBLE_COEFFICIENT:
            return NEGLIGIBLE_BANDWIDTH, True
        return 1.0 / coef, False
    return max(0.0, coef), coef <= 0


def _report(predicted: np.ndarray, measured: np.ndarray, held: np.ndarray, command: str, machine: str) -> FitReport:
    errors = np.abs(predicted - measured) / measured
    train, test = errors[~held], errors[held]
    return FitReport(
        command=command,
        machine=machine,
        points_fit=int(train.size),
        points_held_out=int(test.size),
        train_median_rel_error=float(np.median(train)),
        train_max_rel_error=float(train.max()),
        holdout_median_rel_error=float(np.median(test)) if test.size else 0.0,
        holdout_max_rel_error=float(test.max()) if test.size else 0.0,
    )


# CSV ------------------------------------------------------------------------------------------------------


def read_csv(path: Path) -> list[Measurement]:
    """Measurements from a CSV file (format in the module docstring); every problem is a one-line SpecError."""
    text = _read_text(path)
    columns: list[str] | None = None
    out: list[Measurement] = []
    for line, raw in enumerate(text.split("\n"), start=1):  # newlines are already universal: exact line numbers
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cells = _split(raw, path.name, line)
        if columns is None:
            columns = _check_header(cells, path.name, line)
        else:
            out.append(_parse_row(cells, columns, path.name, line))
    if columns is None:
        raise SpecError(path.name, "is empty: no header row", f"start the file with the header {','.join(COLUMNS)}")
    return out


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise SpecError(path.name or str(path), f"no such file {str(path)!r}", "give the path of a measurements CSV")
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark (spreadsheet export) is not a column
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path.name, f"cannot read it: {exc}", "give a UTF-8 text file") from None


def _split(raw: str, file: str, line: int) -> list[str]:
    try:
        cells = next(csv.reader([raw], strict=True))
    except csv.Error as exc:
        raise SpecError(f"{file} line {line}", f"not valid CSV: {exc}", "separate values with commas") from None
    return [c.strip() for c in cells]


def _check_header(cells: list[str], file: str, line: int) -> list[str]:
    known = COLUMNS + OPTIONAL_COLUMNS
    for i, name in enumerate(cells):
        where = f"{file} line {line} column {name or i + 1}"
        if name not in known:
            raise SpecError(
                where, f"unknown column {name!r}", f"the first row must be the header; columns are {','.join(known)}"
            )
        if name in cells[:i]:
            raise SpecError(where, "repeats an earlier column", "name each column once")
    missing = [c for c in COLUMNS if c not in cells]
    if missing:
        raise SpecError(
            f"{file} line {line} column {missing[0]}",
            "is missing from the header",
            f"the header must name {','.join(COLUMNS)}",
        )
    return cells


def _parse_row(cells: list[str], columns: list[str], file: str, line: int) -> Measurement:
    prefix = f"{file} line {line}"
    if len(cells) != len(columns):
        raise SpecError(
            prefix,
            f"has {len(cells)} values, the header has {len(columns)} columns",
            "write one value per column, separated by commas",
        )
    row = dict(zip(columns, cells, strict=True))

    def where(column: str) -> str:
        return f"{prefix} column {column}"

    table = _parse_table(row, line, where)
    share = row.get("cache_share_bytes", "")
    m = Measurement(
        strategy=_parse_strategy(row["strategy"], where("strategy")),
        table=table,
        batch_size=_parse_int(row["batch_size"], where("batch_size"), 1),
        rows=(_parse_int(row["row_lo"], where("row_lo"), 0), _parse_int(row["row_hi"], where("row_hi"), 0)),
        samples=(
            _parse_int(row["sample_lo"], where("sample_lo"), 0),
            _parse_int(row["sample_hi"], where("sample_hi"), 0),
        ),
        measured_s=_parse_float(row["measured_s"], where("measured_s"), "seconds, e.g. 1.2e-05", positive=True),
        cache_share_bytes=_parse_float(share, where("cache_share_bytes"), "bytes, or leave it empty")
        if share
        else None,
        first_on_core=_parse_flag(row.get("first_on_core", ""), where("first_on_core")),
        plan=row.get("plan", "").strip(),
        core=_parse_int(row["core"], where("core"), 0) if row.get("core", "") else None,
    )
    problem = _problem(m)
    if problem is not None:
        raise SpecError(where(problem[0]), problem[1], problem[2])
    return m


def _parse_table(row: dict[str, str], line: int, where: Callable[[str], str]) -> TableSpec:
    rows = _parse_int(row["rows"], where("rows"), 1)
    dim = _parse_int(row["dim"], where("dim"), 1)
    pooling = _parse_int(row["pooling"], where("pooling"), 1)
    dtype = row["dtype"].lower()
    if dtype not in {d.value for d in DType}:
        raise SpecError(where("dtype"), f"unknown dtype {row['dtype']!r}", "use fp32, fp16 or int8")
    distribution = _parse_distribution(row["distribution"], where("distribution"))
    try:
        return TableSpec(
            name=row.get("table") or f"m{line}",
            rows=rows,
            dim=dim,
            dtype=DType(dtype),
            pooling=pooling,
            distribution=distribution,
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        column = str(err["loc"][0]) if err.get("loc") else "rows"
        column = "table" if column == "name" else column
        raise SpecError(
            where(column),
            f"{err['msg'][0].lower()}{err['msg'][1:]}, got {err.get('input')!r}",
            "use a value in the allowed range",
        ) from None


def _parse_strategy(text: str, where: str) -> Strategy:
    try:
        return Strategy(text.upper())
    except ValueError:
        raise SpecError(where, f"unknown strategy {text!r}", "use GM, L1, GM-UB or L1-UB") from None


def _parse_int(text: str, where: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SpecError(
            where, f"must be a whole number, got {text!r}", f"write an integer of at least {minimum}"
        ) from None
    if value < minimum:
        raise SpecError(where, f"must be at least {minimum}, got {value}", f"write an integer of at least {minimum}")
    return value


def _parse_float(text: str, where: str, unit: str, positive: bool = False) -> float:
    """A finite number, positive or non-negative."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise SpecError(where, f"must be a {kind} number, got {text!r}", f"write {unit}")
    return value


def _parse_distribution(text: str, where: str) -> Uniform | Zipf | HotSet:
    kind, *args = [part.strip() for part in text.lower().split(":")]
    try:
        if kind == "uniform" and not args:
            return Uniform()
        if kind == "zipf" and len(args) == 1:
            return Zipf(alpha=float(args[0]))
        if kind == "hot-set" and len(args) == 2:
            return HotSet(hot_rows=int(args[0]), hot_mass=float(args[1]))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err.get("loc", ()))
        raise SpecError(
            where, f"{field} {err['msg'][0].lower()}{err['msg'][1:]}, got {text!r}", DISTRIBUTION_FIX
        ) from None
    except ValueError:
        pass
    raise SpecError(where, f"unknown distribution {text!r}", DISTRIBUTION_FIX)


def _parse_flag(text: str, where: str) -> bool:
    """`first_on_core`: 1 or 0; empty or absent means 1 (an item measured alone is its core's first)."""
    if text in ("", "1"):
        return True
    if text == "0":
        return False
    raise SpecError(
        where, f"must be 0 or 1, got {text!r}", "write 1 for the first item its core ran in the batch, else 0"
    )


def write_csv(measurements: Sequence[Measurement], path: Path) -> None:
    """Write measurements in the CSV format `read_csv` reads, atomically (temporary file, then rename)."""
    rows = [_format_row(m, i) for i, m in enumerate(measurements)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS + OPTIONAL_COLUMNS)
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())


def _format_row(m: Measurement, index: int) -> list[str]:
    _require_valid(m, f"measurements[{index}]")
    t = m.table
    share = "" if m.cache_share_bytes is None else repr(float(m.cache_share_bytes))
    return [
        m.strategy.value, str(t.rows), str(t.dim), t.dtype.value, str(t.pooling), str(m.batch_size),
        str(m.rows[0]), str(m.rows[1]), str(m.samples[0]), str(m.samples[1]),
        _format_distribution(t.distribution), repr(float(m.measured_s)),
        t.name if m.plan else "", m.plan, share, "1" if m.first_on_core else "0",
        "" if m.core is None else str(m.core),
    ]  # fmt: skip


def _format_distribution(d: Uniform | Zipf | HotSet | None) -> str:
    if isinstance(d, Zipf):
        return f"zipf:{d.alpha!r}"
    if isinstance(d, HotSet):
        return f"hot-set:{d.hot_rows}:{d.hot_mass!r}"
    return "uniform"
