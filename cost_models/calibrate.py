"""Fit the cost model's parameters to measured work items (non-negative least squares on relative errors).

A measured item is one linear equation in the parameters (`analytic.item_terms`): amounts x coefficients =
seconds, each row divided by its time so that small and large items weigh alike, every coefficient >= 0.
Huber's loss by default (a shared machine's noise only ever adds time); every `holdout_every`-th measurement
is held out, so the `FitReport` says how well the profile predicts items it has not seen. The effective cache
fraction and the main-memory window, not linear, are searched on grids around the linear fit. The measurements
and their CSV: `cost_models.measurements`; the solver: `cost_models.nnls`; the method: docs/calibration.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
from embmap.cost_models.measurements import MAX_MEASUREMENTS, Measurement, require_valid
from embmap.cost_models.nnls import nnls
from embmap.ir.cost_profile import CostProfile, FitReport
from embmap.ir.errors import SpecError
from embmap.ir.module import TableProfile, reads_together
from embmap.ir.spec import TableSpec, TargetSpec, TLBSpec

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
# No memory of a chip moves less than a megabyte a second: a fit that finds a slower one was given times in
# another unit, and its profile would price one table's reads in days, beyond what a compile can count.
MIN_FITTED_BYTES_PER_S = 1e6


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
    distinct_rows: float | None = None,
) -> dict[str, float]:
    """Parameter name -> total amount of the measured item, exactly as the cost model would predict it, given
    what the shared cache holds of its table (default: what it holds with the table alone in the whole
    cache), the bytes and pages its core's other items read (default: none, alone on its core) and the
    profile's `main_window_rows` (`window`). `distinct_rows`: the table's distinct rows per batch, if the
    caller computed them already (they depend on neither the cache nor the window)."""
    require_valid(m, "measurement")
    table = m.table
    lookups = m.batch_size * table.pooling
    if cache is None:
        cache = cache_states_of([m], target, 1.0)[0]
    if distinct_rows is None:
        distinct_rows = table_histogram(table).expected_distinct(lookups)
    stats = TableProfile(
        table=table.name,
        bytes=table.bytes,
        lookups_per_batch=lookups,
        distinct_rows_per_batch=distinct_rows,
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
    _require_informative(measurements)
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
    design = _Design(measurements, target)

    def fit(f: float, w: float) -> tuple[CalibrationResult, float]:
        if (f, w) not in fits:
            fits[f, w] = _fit_linear(design, base, (f, w), searched, command, holdout_every, fixed, machine, loss)
        return fits[f, w]

    f = min(fractions, key=lambda f: fit(f, windows[0])[1])
    w = min(windows, key=lambda w: fit(f, w)[1])
    f = min(fractions, key=lambda f: fit(f, w)[1])
    return fit(f, w)[0]


CACHE_FRACTIONS = (1.0, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12, 0.08, 0.05, 0.03)
MAIN_WINDOWS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 8.0)


def _fit_linear(
    design: _Design,
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
    measurements, target = design.measurements, design.target
    fixed_coef = _fixed_coefficients(fixed)
    held = _held_out(len(measurements), holdout_every)
    names = CostProfile.parameter_names()
    amounts = design.amounts(fraction, window)
    measured = np.array([m.measured_s for m in measurements], dtype=float)
    a, b = amounts[~held], measured[~held]
    free = [p for j, p in enumerate(names) if a[:, j].any() and p not in fixed_coef]
    _require_enough_points(len(b), free)
    offset = a @ np.array([fixed_coef.get(p, 0.0) for p in names])
    scaled, norms = _relative_design(a[:, [names.index(p) for p in free]], b)
    coefs = _irls(scaled, (b - offset) / b, loss) / np.where(norms > 0, norms, 1.0)
    if not np.isfinite(coefs).all():
        bad = [p for p, c in zip(free, coefs, strict=True) if not np.isfinite(c)]
        raise SpecError(
            "calibration",
            f"the fit gives {', '.join(bad)} no finite value",
            "look for measurements far out of line with the others (a unit other than seconds, a timer's overflow)",
        )
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
        return np.asarray(errors**2)
    e = np.abs(errors)
    return np.asarray(np.where(e <= HUBER_K, e**2, 2 * HUBER_K * e - HUBER_K**2))


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


class _Design:
    """The design matrix of one set of measurements (one row per measurement, one column per profile parameter:
    amounts, not seconds) for each (effective cache fraction, main-memory window) the search asks about. What
    does not depend on them (the checks, the neighbours of each item) is computed once, what depends on the
    fraction alone (the shared cache's state) once per fraction."""

    def __init__(self, measurements: Sequence[Measurement], target: TargetSpec) -> None:
        for i, m in enumerate(measurements):
            require_valid(m, f"measurements[{i}]")
        self.measurements = measurements
        self.target = target
        self.neighbours = neighbour_bytes_of(measurements)
        self.pages = neighbour_pages_of(measurements, target.tlb)
        self.distinct = [
            table_histogram(m.table).expected_distinct(m.batch_size * m.table.pooling) for m in measurements
        ]
        self._states: dict[float, list[CacheState]] = {}
        self._amounts: dict[tuple[float, float], np.ndarray] = {}

    def amounts(self, fraction: float, window: float) -> np.ndarray:
        if (fraction, window) not in self._amounts:
            if fraction not in self._states:
                self._states[fraction] = cache_states_of(self.measurements, self.target, fraction)
            names = CostProfile.parameter_names()
            rows = [
                [terms.get(p, 0.0) for p in names]
                for terms in (
                    measurement_terms(m, self.target, state, others, other_pages, window, distinct)
                    for m, state, others, other_pages, distinct in zip(
                        self.measurements,
                        self._states[fraction],
                        self.neighbours,
                        self.pages,
                        self.distinct,
                        strict=True,
                    )
                )
            ]
            self._amounts[fraction, window] = np.array(rows, dtype=float).reshape(len(rows), len(names))
        return self._amounts[fraction, window]


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


def _require_informative(measurements: Sequence[Measurement]) -> None:
    """Refuse measurements no fit can learn from (none, or all of one time) or too many to fit in minutes."""
    if len(measurements) > MAX_MEASUREMENTS:
        raise SpecError(
            "calibration",
            f"{len(measurements):,} measurements, more than the {MAX_MEASUREMENTS:,} one fit takes",
            f"fit a sample of at most {MAX_MEASUREMENTS:,} of them (every strategy and table size represented)",
        )
    for i, m in enumerate(measurements):
        require_valid(m, f"measurements[{i}]")
    times = {m.measured_s for m in measurements}
    if len(measurements) > 1 and len(times) == 1:
        raise SpecError(
            "calibration",
            f"all {len(measurements)} measurements took exactly {times.pop()!r} s: equal times cannot tell the "
            "cost of one item from another's",
            "measure each item's own time (a timer per item, not one value copied to every line)",
        )


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
    except ValueError:  # amounts so far apart from their times that relative errors overflow
        raise SpecError(
            "calibration",
            "the measurements' amounts divided by their times are not finite numbers",
            "look for measurements far out of line with the others (a unit other than seconds)",
        ) from None


def _confounded(scaled: np.ndarray, free: list[str]) -> dict[str, list[str]]:
    """Parameters the measurements cannot tell apart: those that share a (near) null vector of the design."""
    if not free:
        return {}
    # Only the right singular vectors: a full decomposition would also build the points x points U.
    sv, vt = _right_singular(scaled)
    out: dict[str, list[str]] = {}
    for v in vt[sv <= CONFOUNDED_SV * max(float(sv[0]), 1e-300)]:
        involved = [p for p, c in zip(free, v, strict=True) if abs(c) > 1e-3 * float(np.abs(v).max())]
        for p in involved:
            out.setdefault(p, []).extend(q for q in involved if q != p and q not in out[p])
    return out


def _right_singular(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The singular values of `a` (points x parameters), one per parameter (0 past the rank of a short
    matrix), and the right singular vectors as rows, in O(points) memory."""
    if a.shape[0] < a.shape[1]:
        _, sv, vt = np.linalg.svd(a, full_matrices=True)  # a short matrix: U is small, and V needs every row
        return np.concatenate([sv, np.zeros(a.shape[1] - len(sv))]), vt
    _, sv, vt = np.linalg.svd(a, full_matrices=False)
    return sv, vt


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
    # A profile that every later compile would refuse, or break on, is refused here, in one line.
    slow = [p for p in coefs if p.endswith("_bytes_per_s") and values[p] < MIN_FITTED_BYTES_PER_S]
    if slow:
        problem = f"{slow[0]} is {float(values[slow[0]]):.3g} B/s, less than {MIN_FITTED_BYTES_PER_S:g} B/s"
    else:
        try:
            return CostProfile.model_validate(data)
        except ValidationError as exc:
            problem = exc.errors(include_url=False)[0]["msg"]
    raise SpecError(
        "calibration",
        f"the fitted profile is unusable: {problem}",
        "check that measured_s is in seconds, and measure items of several sizes and strategies so that the fit "
        "can tell the costs apart",
    )


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
