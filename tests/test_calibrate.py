"""Calibration: NNLS is optimal, the fit recovers known parameters, and the measurements CSV is strict."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from embmap.cost_models.analytic import ItemShape, item_cost, shared_cache_state, table_histogram
from embmap.cost_models.calibrate import HUBER_K, MAIN_WINDOWS, fit_profile, measurement_terms
from embmap.cost_models.measurements import Measurement, read_csv, write_csv
from embmap.cost_models.nnls import nnls
from embmap.cost_models.presets import preset_profile
from embmap.ir.cost_profile import CostProfile
from embmap.ir.errors import SpecError
from embmap.ir.module import TableProfile
from embmap.ir.plan import Strategy
from embmap.ir.spec import DType, HotSet, TableSpec, TargetSpec, TLBSpec, Uniform, Zipf
from embmap.ir.targets import ascend910

# NNLS -----------------------------------------------------------------------------------------------------


def brute_force_nnls(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest residual over every active set whose unconstrained solution is non-negative."""
    best = float(np.linalg.norm(b))
    for k in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), k):
            x = np.linalg.lstsq(a[:, cols], b, rcond=None)[0]
            if (x >= 0).all():
                best = min(best, float(np.linalg.norm(a[:, cols] @ x - b)))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_nnls_matches_brute_force_and_kkt(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(2, 9)), int(rng.integers(1, 6))
    a, b = rng.standard_normal((m, n)), rng.standard_normal(m)
    x = nnls(a, b)
    assert (x >= 0).all()
    assert np.linalg.norm(a @ x - b) == pytest.approx(brute_force_nnls(a, b), rel=1e-9, abs=1e-12)
    g = a.T @ (a @ x - b)
    tol = 1e-9 * (1 + np.abs(a).sum() * np.abs(b).sum())
    assert (g[x == 0] >= -tol).all()
    assert (np.abs(g[x > 0]) <= tol).all()


def test_nnls_returns_the_unconstrained_solution_when_it_is_non_negative() -> None:
    rng = np.random.default_rng(7)
    a = rng.standard_normal((12, 4))
    x_true = np.array([0.5, 2.0, 1e-3, 3.0])
    assert nnls(a, a @ x_true) == pytest.approx(x_true, rel=1e-10)
    b = rng.standard_normal(12)
    x_ls = np.linalg.lstsq(a, b, rcond=None)[0]
    if (x_ls >= 0).all():
        assert nnls(a, b) == pytest.approx(x_ls, rel=1e-10)


def test_nnls_clamps_what_would_go_negative() -> None:
    a = np.eye(3)
    assert nnls(a, np.array([1.0, -2.0, 3.0])) == pytest.approx([1.0, 0.0, 3.0])
    assert nnls(a, -np.ones(3)) == pytest.approx(np.zeros(3))


@pytest.mark.parametrize("seed", range(10))
def test_nnls_kkt_on_larger_problems(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    a = rng.standard_normal((40, 15)) * np.logspace(-6, 6, 15)  # badly scaled columns
    b = rng.standard_normal(40)
    x = nnls(a, b)
    g = a.T @ (a @ x - b)
    tol = 1e-8 * np.linalg.norm(a, axis=0) * np.linalg.norm(b)
    assert (x >= 0).all() and 0 < (x > 0).sum() < 15
    assert (g[x == 0] >= -tol[x == 0]).all()
    assert (np.abs(g[x > 0]) <= tol[x > 0]).all()


def test_nnls_gives_up_after_max_iter() -> None:
    a, b = np.eye(3), np.ones(3)
    assert nnls(a, b, max_iter=3) == pytest.approx(np.ones(3))
    with pytest.raises(RuntimeError, match="did not converge"):
        nnls(a, b, max_iter=2)


def test_nnls_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        nnls(np.ones((3, 2)), np.ones(4))


# Recovering a known profile -------------------------------------------------------------------------------

TRUE_FACTORS = {
    "item_fixed_s": 3.0,
    "core_start_s": 5.0,
    "local_row_s": 0.5,
    "main_bytes_per_s": 2.0,
    "chunk_fixed_s": 4.0,
    "page_walk_cache_s": 3.0,
    "page_walk_main_s": 0.5,
}
TABLE_SHAPES = (
    (100, 16, DType.FP32),
    (5_000, 32, DType.FP16),
    (50_000, 64, DType.FP32),
    (1_000_000, 16, DType.FP32),  # 64 MiB: larger than the shared cache, with 64-byte rows
    (400_000, 128, DType.FP32),  # 205 MB, with 512-byte rows: separates per-row from per-byte costs
    (2_000_000, 8, DType.INT8),
    (200_000_000, 16, DType.FP32),  # 12.8 GB: its page tables (25 MB) do not fit in the cache beside the rows
)


TRUE_VALUES = {"bag_s": 1e-9, "main_bag_s": 20e-9, "page_walk_s": 8e-9, "page_walk_overlapped_s": 2e-9}  # presets are 0


def true_profile(target: TargetSpec) -> CostProfile:
    base = preset_profile(target)
    return base.model_copy(update={p: getattr(base, p) * f for p, f in TRUE_FACTORS.items()} | TRUE_VALUES)


def capacity(target: TargetSpec) -> float:
    return target.shared_cache.capacity_bytes if target.shared_cache else 0.0


def predicted(m: Measurement, target: TargetSpec, profile: CostProfile) -> float:
    """The cost model's prediction for a measurement, built independently of `measurement_terms`."""
    lookups = m.batch_size * m.table.pooling
    cache = shared_cache_state(
        capacity(target) * profile.cache_effective_fraction, [m.table], m.batch_size, target.tlb
    )[0]
    stats = TableProfile(
        table=m.table.name,
        bytes=m.table.bytes,
        lookups_per_batch=lookups,
        distinct_rows_per_batch=table_histogram(m.table).expected_distinct(lookups),
        cache_share_bytes=cache.share_bytes,
        walk_hit_ratio=cache.walk_hit_ratio,
    )
    item = item_cost(ItemShape(m.strategy, m.rows, m.samples), m.table, stats, target, profile).total_s
    return item + (profile.core_start_s if m.first_on_core else 0.0)


def row_ranges(strategy: Strategy, table: TableSpec, target: TargetSpec) -> list[tuple[int, int]]:
    """Whole table and a half for streamed strategies; for preloaded ones a shard that fits the local buffer."""
    if not strategy.preloaded:
        return [(0, table.rows), (0, table.rows // 2)]
    fit = max(1, min(table.rows, target.local.capacity_bytes // table.row_bytes))
    return [(0, table.rows), (table.rows // 2, table.rows)] if fit == table.rows else [(0, fit)]


def synthetic(target: TargetSpec, profile: CostProfile) -> list[Measurement]:
    out = []
    for (rows, dim, dtype), dist, pooling, batch, strategy in itertools.product(
        TABLE_SHAPES, (Uniform(), Zipf(alpha=1.05)), (1, 8), (64, 1024), Strategy
    ):
        table = TableSpec(name="t", rows=rows, dim=dim, dtype=dtype, pooling=pooling, distribution=dist)
        for r, s in itertools.product(row_ranges(strategy, table, target), ((0, batch), (0, batch // 2))):
            first = s == (0, batch)  # half the items start their core's batch, half follow another item
            m = Measurement(strategy, table, batch, r, s, 1.0, first_on_core=first)
            out.append(Measurement(strategy, table, batch, r, s, predicted(m, target, profile), first_on_core=first))
    return out


@pytest.fixture(scope="module")
def ascend() -> TargetSpec:
    """ascend910 with a translation cache (32 MiB reach), so that every parameter of the model is exercised."""
    return ascend910().model_copy(update={"tlb": TLBSpec(entries=512, page_bytes=4096)})


@pytest.fixture(scope="module")
def exact(ascend: TargetSpec) -> list[Measurement]:
    return synthetic(ascend, true_profile(ascend))


def test_fit_recovers_known_parameters(ascend: TargetSpec, exact: list[Measurement]) -> None:
    base, truth = preset_profile(ascend), true_profile(ascend)
    # Where the local memory is a buffer, every walk reads the shared cache: the two prices of a walk are
    # separable from the shared-cache read's only given one of them (test_private_cache.py fits all three).
    given = {"page_walk_overlapped_s": truth.page_walk_overlapped_s}
    result = fit_profile(exact, ascend, base, command="pytest synthetic", machine="none", fixed=given)
    fitted = result.profile
    exercised = [p for p in CostProfile.parameter_names() if fitted.sources[p].startswith("fit:")]
    # All but the private cache's, which only a target whose local memory is a cache has (test_private_cache.py).
    assert set(TRUE_FACTORS) | set(TRUE_VALUES) - set(given) <= set(exercised) and set(
        CostProfile.parameter_names()
    ) - set(exercised) == {"item_evicted_s"} | set(given)
    for p in exercised:
        assert getattr(fitted, p) == pytest.approx(getattr(truth, p), rel=0.01), p
        assert fitted.sources[p] == f"fit: Huber NNLS on {result.report.points_fit} points (pytest synthetic)"
    assert fitted.calibrated and fitted.target == "ascend910" and fitted.fit == result.report
    assert result.report.points_held_out == sum(result.held_out) == len(range(2, len(exact), 5))
    assert result.held_out[2] and not result.held_out[3] and result.held_out[7]
    assert result.report.holdout_max_rel_error < 1e-6 and result.report.train_max_rel_error < 1e-6
    assert result.predicted_s == pytest.approx([m.measured_s for m in exact], rel=1e-6)


def test_fit_tolerates_noise(ascend: TargetSpec, exact: list[Measurement]) -> None:
    rng = np.random.default_rng(2024)
    noisy = [
        Measurement(
            m.strategy,
            m.table,
            m.batch_size,
            m.rows,
            m.samples,
            m.measured_s * (1 + 0.03 * e),
            first_on_core=m.first_on_core,
        )
        for m, e in zip(exact, rng.standard_normal(len(exact)), strict=True)
    ]
    nonlinear = {"cache_effective_fraction": 1.0, "main_window_rows": 1.0}  # the truth's: no search needed here
    result = fit_profile(noisy, ascend, preset_profile(ascend), command="pytest noisy", fixed=nonlinear)
    assert result.report.points_held_out > 50
    assert result.report.holdout_median_rel_error < 0.05
    CostProfile.model_validate(result.profile.model_dump())  # every value within the profile's rules


def test_fixed_parameters_are_honoured(ascend: TargetSpec, exact: list[Measurement]) -> None:
    truth = true_profile(ascend)
    nonlinear = {"cache_effective_fraction": 1.0, "main_window_rows": 1.0}  # the truth's: no search needed here
    fixed = nonlinear | {"main_bytes_per_s": 1e11}
    result = fit_profile(exact, ascend, preset_profile(ascend), command="c", fixed=fixed)
    assert result.profile.main_bytes_per_s == 1e11
    assert "fixed" in result.profile.sources["main_bytes_per_s"]
    fixed = nonlinear | {"item_fixed_s": truth.item_fixed_s}
    right = fit_profile(exact, ascend, preset_profile(ascend), command="c", fixed=fixed)
    assert right.profile.item_fixed_s == truth.item_fixed_s
    assert right.profile.local_row_s == pytest.approx(truth.local_row_s, rel=1e-6)
    assert right.report.holdout_max_rel_error < 1e-6
    with pytest.raises(SpecError, match=r"fixed\.no_such_s"):
        fit_profile(exact, ascend, preset_profile(ascend), command="c", fixed={"no_such_s": 1.0})


def test_unexercised_parameters_keep_the_base_value(ascend: TargetSpec, exact: list[Measurement]) -> None:
    base = preset_profile(ascend)
    only_l1 = [m for m in exact if m.strategy is Strategy.L1]
    result = fit_profile(only_l1, ascend, base, command="c")
    for p in ("chunk_fixed_s", "main_row_s", "stream_main_bytes_per_s", "scratch_row_s"):
        assert getattr(result.profile, p) == getattr(base, p)
        assert result.profile.sources[p] == f"not exercised by the measurements; kept from {base.sources[p]}"
    assert result.profile.local_row_s == pytest.approx(true_profile(ascend).local_row_s, rel=1e-6)


def test_confounded_parameters_are_flagged(ascend: TargetSpec, exact: list[Measurement]) -> None:
    one_row_size = [m for m in exact if m.strategy is Strategy.L1 and m.table.row_bytes == 64]
    result = fit_profile(one_row_size, ascend, preset_profile(ascend), command="c")
    assert "not separable from local_bytes_per_s" in result.profile.sources["local_row_s"]
    assert result.report.holdout_max_rel_error < 1e-6  # predictions are still right


def test_a_negligible_bandwidth_is_stored_as_huge(ascend: TargetSpec) -> None:
    t = TableSpec(name="t", rows=1000, dim=16, pooling=2, distribution=Uniform())
    ms = [Measurement(Strategy.L1, t, b, (0, 1000), (0, b), 1e-6 + 3e-8 * 2 * b) for b in (1, 4, 16, 64, 256, 1024)]
    # One pooling factor: a bag's cost and its rows' cannot be told apart, so the bag's is given (none).
    result = fit_profile(ms, ascend, preset_profile(ascend), command="c", holdout_every=0, fixed={"bag_s": 0.0})
    assert result.profile.local_bytes_per_s == 1e18 and result.profile.output_bytes_per_s == 1e18
    assert "negligible" in result.profile.sources["local_bytes_per_s"]
    assert result.profile.local_row_s == pytest.approx(3e-8)
    assert result.report.points_held_out == 0 and result.report.holdout_max_rel_error == 0


def test_too_few_points_is_an_error(ascend: TargetSpec, exact: list[Measurement]) -> None:
    with pytest.raises(SpecError, match="calibration: 3 measurements to fit"):
        fit_profile(exact[:4], ascend, preset_profile(ascend), command="c")
    with pytest.raises(SpecError, match="calibration"):
        fit_profile([], ascend, preset_profile(ascend), command="c")


def test_measurement_terms_match_the_cost_model(ascend: TargetSpec, exact: list[Measurement]) -> None:
    truth = true_profile(ascend)
    for m in exact[::37]:
        terms = measurement_terms(m, ascend)
        total = sum(
            amount * getattr(truth, p) ** (-1 if p.endswith("_bytes_per_s") else 1) for p, amount in terms.items()
        )
        assert total == pytest.approx(m.measured_s, rel=1e-12)


def test_invalid_measurement_is_named(ascend: TargetSpec) -> None:
    t = TableSpec(name="t", rows=10, dim=4, distribution=Uniform())
    bad = Measurement(Strategy.GM, t, 8, (0, 11), (0, 8), 1e-6)
    with pytest.raises(SpecError, match=r"measurements\[1\]\.row_hi"):
        fit_profile(
            [Measurement(Strategy.GM, t, 8, (0, 10), (0, 8), 1e-6), bad], ascend, preset_profile(ascend), command="c"
        )


# CSV ------------------------------------------------------------------------------------------------------

HEADER = "strategy,rows,dim,dtype,pooling,batch_size,row_lo,row_hi,sample_lo,sample_hi,distribution,measured_s"
GOOD = "L1,5000,32,fp16,4,1024,0,5000,0,512,zipf:1.05,1.8e-05"


def test_csv_round_trip(tmp_path: Path) -> None:
    dists = (Uniform(), Zipf(alpha=0.8), HotSet(hot_rows=7, hot_mass=0.95))
    ms = [
        Measurement(
            strategy,
            TableSpec(name=f"m{i + 2}", rows=1000 + i, dim=8, dtype=dtype, pooling=3, distribution=dists[i % 3]),
            256,
            (i, 1000),
            (0, 256 - i),
            1.234567891234e-6 * (i + 1),
            None if i % 2 else 12345.5,
        )
        for i, (strategy, dtype) in enumerate(itertools.product(Strategy, DType))
    ]
    path = tmp_path / "m.csv"
    write_csv(ms, path)
    assert read_csv(path) == ms
    assert [p.name for p in tmp_path.iterdir()] == ["m.csv"]  # no temporary file left behind


def test_csv_reads_comments_blank_lines_and_any_column_order(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    cols = HEADER.split(",")
    order = list(reversed(cols))
    values = dict(zip(cols, GOOD.split(","), strict=True))
    path.write_text(
        f"# measured on a test box\n\n{','.join(order)}\n\n# one item\n{','.join(values[c] for c in order)}\n"
    )
    (m,) = read_csv(path)
    assert m.table.name == "m6" and m.table.distribution == Zipf(alpha=1.05) and m.table.dtype is DType.FP16
    assert (m.strategy, m.rows, m.samples, m.measured_s, m.cache_share_bytes) == (
        Strategy.L1,
        (0, 5000),
        (0, 512),
        1.8e-05,
        None,
    )


@pytest.mark.parametrize(
    ("body", "where", "problem"),
    [
        (f"{HEADER}\n{GOOD.replace('1.8e-05', 'abc')}", "line 2 column measured_s", "positive number, got 'abc'"),
        (f"{HEADER}\n{GOOD.replace('1.8e-05', '0')}", "line 2 column measured_s", "positive number"),
        (f"{HEADER}\n{GOOD.replace('L1,', 'L3,')}", "line 2 column strategy", "unknown strategy 'L3'"),
        (f"{HEADER}\n{GOOD.replace('fp16', 'bf16')}", "line 2 column dtype", "unknown dtype"),
        (f"{HEADER}\n{GOOD.replace('zipf:1.05', 'zipf')}", "line 2 column distribution", "unknown distribution"),
        (f"{HEADER}\n{GOOD.replace('zipf:1.05', 'zipf:9')}", "line 2 column distribution", "alpha"),
        (f"{HEADER}\n{GOOD.replace('0,5000,0', '0,5001,0')}", "line 2 column row_hi", "past the end of the table"),
        (f"{HEADER}\n{GOOD.replace('0,5000,0', '9,9,0')}", "line 2 column row_hi", "range is empty"),
        (f"{HEADER}\n{GOOD.replace('0,512,', '0,2048,')}", "line 2 column sample_hi", "past the end of the batch"),
        (f"{HEADER}\n{GOOD.replace(',32,', ',3.5,')}", "line 2 column dim", "whole number"),
        (f"{HEADER}\n{GOOD.replace(',32,', ',70000,')}", "line 2 column dim", "less than or equal"),
        (f"{HEADER}\n# fine\n{GOOD},7", "line 3", "13 values, the header has 12"),
        (f"{HEADER},cache_share_bytes\n{GOOD},-1", "line 2 column cache_share_bytes", "non-negative"),
        (f"{HEADER},speed\n{GOOD},1", "line 1 column speed", "unknown column"),
        (f"{HEADER},dim\n{GOOD},1", "line 1 column dim", "repeats an earlier column"),
        (f"{HEADER.replace(',measured_s', '')}\n", "line 1 column measured_s", "missing from the header"),
        (f"{GOOD}\n", "line 1 column L1", "unknown column"),
    ],
)
def test_malformed_csv_is_a_one_line_error(tmp_path: Path, body: str, where: str, problem: str) -> None:
    path = tmp_path / "measurements.csv"
    path.write_text(body + "\n")
    with pytest.raises(SpecError) as err:
        read_csv(path)
    message = str(err.value)
    assert message.startswith(f"measurements.csv {where}: ") and problem in message and "\n" not in message
    assert "(fix: " in message


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        read_csv(tmp_path / "absent.csv")
    path = tmp_path / "empty.csv"
    path.write_text("# only a comment\n\n")
    with pytest.raises(SpecError, match="empty.csv: is empty: no header row"):
        read_csv(path)
    path.write_text(HEADER + "\n")
    assert read_csv(path) == []
    path.write_bytes(("\ufeff" + HEADER + "\r\n" + GOOD + "\r\n").encode())  # spreadsheet export: BOM, CRLF
    assert [m.table.name for m in read_csv(path)] == ["m2"]


def test_fit_minimizes_relative_not_absolute_error(ascend: TargetSpec) -> None:
    t = TableSpec(name="t", rows=100, dim=4, distribution=Uniform())
    ms = [Measurement(Strategy.L1, t, 8, (0, 100), (0, 8), s) for s in (1e-6, 3e-6)]
    others = {p: 1e18 if p.endswith("_bytes_per_s") else 0.0 for p in CostProfile.parameter_names()}
    del others["item_fixed_s"]
    result = fit_profile(ms, ascend, preset_profile(ascend), command="c", holdout_every=0, fixed=others, loss="squares")
    # min over c of (c/1 - 1)^2 + (c/3 - 1)^2 (in microseconds) is c = 1.2; absolute least squares would give 2
    assert result.profile.item_fixed_s == pytest.approx(1.2e-6, rel=1e-9)
    assert result.report.train_max_rel_error == pytest.approx(0.6, rel=1e-6)
    assert result.profile.sources["item_fixed_s"] == "fit: least-squares NNLS on 2 points (c)"


def test_huber_fit_is_the_weighted_median_beyond_its_threshold(ascend: TargetSpec) -> None:
    """One parameter, three points 1, 1 and 3 us: Huber's loss takes c where the derivative vanishes. With
    c near 1 the two small points are within HUBER_K and the large one beyond it: 2 (c - 1) = k / 3 gives
    c = 1 + k / 6 (relative errors c - 1 and c / 3 - 1), where squares would give (2 + 1/3) / (2 + 1/9)."""
    t = TableSpec(name="t", rows=100, dim=4, distribution=Uniform())
    ms = [Measurement(Strategy.L1, t, 8, (0, 100), (0, 8), s) for s in (1e-6, 1e-6, 3e-6)]
    others = {p: 1e18 if p.endswith("_bytes_per_s") else 0.0 for p in CostProfile.parameter_names()}
    del others["item_fixed_s"]
    huber = fit_profile(ms, ascend, preset_profile(ascend), command="c", holdout_every=0, fixed=others)
    assert huber.profile.item_fixed_s == pytest.approx((1 + HUBER_K / 6) * 1e-6, rel=1e-6)
    squares = fit_profile(
        ms, ascend, preset_profile(ascend), command="c", holdout_every=0, fixed=others, loss="squares"
    )
    assert squares.profile.item_fixed_s == pytest.approx((2 + 1 / 3) / (2 + 1 / 9) * 1e-6, rel=1e-9)


def test_huber_fit_sees_through_slowed_measurements(ascend: TargetSpec, exact: list[Measurement]) -> None:
    """A shared machine's noise is one-sided: one measurement in eight taken while another tenant slowed its
    core by 30-100%. Least squares pulls the predictions up by the slowed points' weight; Huber's loss stays
    less than half as far from the true times."""
    rng = np.random.default_rng(7)
    slowed = rng.random(len(exact)) < 1 / 8
    factors = np.where(slowed, 1.3 + 0.7 * rng.random(len(exact)), 1.0)
    measured = [dataclasses.replace(m, measured_s=m.measured_s * f) for m, f in zip(exact, factors, strict=True)]
    given = {
        "page_walk_overlapped_s": true_profile(ascend).page_walk_overlapped_s,
        "main_window_rows": 1.0,
        "cache_effective_fraction": 1.0,
    }
    true_s = np.array([m.measured_s for m in exact])

    def error(loss: str) -> float:  # median relative error against the true, unslowed times
        result = fit_profile(measured, ascend, preset_profile(ascend), command="c", fixed=given, loss=loss)
        return float(np.median(np.abs(np.array(result.predicted_s) / true_s - 1)))

    huber, squares = error("huber"), error("squares")
    assert huber < 0.015 and squares > 0.02 and huber < 0.5 * squares


def test_an_unknown_loss_is_an_error(ascend: TargetSpec, exact: list[Measurement]) -> None:
    with pytest.raises(SpecError, match=r"loss: unknown loss 'l1'"):
        fit_profile(exact, ascend, preset_profile(ascend), command="c", loss="l1")


def window_recovery(ascend: TargetSpec, strategies: tuple[Strategy, ...]) -> None:
    """Measurements made where a miss among hits waits for a stretch of 2.5 reads: the coordinate search
    finds that window (and the whole shared cache) again, and with them every linear parameter."""
    truth = true_profile(ascend).model_copy(update={"main_window_rows": 2.5})
    measured = [m for m in synthetic(ascend, truth) if m.strategy in strategies]
    given = {"page_walk_overlapped_s": truth.page_walk_overlapped_s}
    result = fit_profile(measured, ascend, preset_profile(ascend), command="c", fixed=given)
    fitted = result.profile
    assert fitted.main_window_rows == 2.5 and fitted.cache_effective_fraction == 1.0
    assert fitted.sources["main_window_rows"] == f"fit: grid search over {len(MAIN_WINDOWS)} values (c)"
    for p in ("main_row_s", "main_bytes_per_s", "main_bag_s", "page_walk_main_s", "cache_row_s"):
        assert getattr(fitted, p) == pytest.approx(getattr(truth, p), rel=0.01), p
    assert result.report.holdout_max_rel_error < 1e-6
    # The linear model (window 1) cannot fit the same measurements.
    linear = fit_profile(measured, ascend, preset_profile(ascend), command="c", fixed=given | {"main_window_rows": 1})
    assert linear.report.train_max_rel_error > 0.01
    assert linear.profile.sources["main_window_rows"] == "fixed in the fit (c)"


def test_fit_recovers_the_main_memory_window(ascend: TargetSpec) -> None:
    # The items that read main memory (the window changes nothing else) and some that do not.
    window_recovery(ascend, (Strategy.GM, Strategy.L1))


@pytest.mark.long
def test_fit_recovers_the_main_memory_window_among_every_strategy(ascend: TargetSpec) -> None:
    window_recovery(ascend, tuple(Strategy))


def test_a_fixed_window_outside_its_range_is_an_error(ascend: TargetSpec, exact: list[Measurement]) -> None:
    with pytest.raises(SpecError, match=r"fixed\.main_window_rows: must be between 1 and 64, got 0.5"):
        fit_profile(exact, ascend, preset_profile(ascend), command="c", fixed={"main_window_rows": 0.5})


# Degenerate measurements: refused, never a profile that breaks every later compile --------------------


def test_a_fit_of_equal_times_is_refused(ascend: TargetSpec, exact: list[Measurement]) -> None:
    """Every line the same time (one timer read copied to every item): the fit used to put it all in
    item_fixed_s and write a profile that prices every item alike."""
    same = [dataclasses.replace(m, measured_s=1e-6) for m in exact[:40]]
    with pytest.raises(SpecError, match=r"calibration: all 40 measurements took exactly 1e-06 s"):
        fit_profile(same, ascend, preset_profile(ascend), command="c")


def test_a_fit_that_gives_an_unusable_profile_is_refused(ascend: TargetSpec, exact: list[Measurement]) -> None:
    """Times in the wrong unit (microseconds written as seconds): the fitted costs are beyond any chip's, and
    every compile would refuse the profile; the fit says so in one line (it raised pydantic's
    ValidationError: an internal error, exit 5)."""
    wrong = [dataclasses.replace(m, measured_s=m.measured_s * 1e6) for m in exact[:200]]
    with pytest.raises(
        SpecError,
        match=r"calibration: the fitted profile is unusable: \w+ is .* (s, more than 1 s|B/s, less than 1e\+06 B/s)",
    ):
        fit_profile(wrong, ascend, preset_profile(ascend), command="c")


def test_a_fitted_bandwidth_below_a_megabyte_a_second_is_refused(ascend: TargetSpec) -> None:
    """Reads that take a millisecond a kilobyte: no memory is that slow, and the solver could not count a
    plan's time in nanoseconds."""
    t = TableSpec(name="t", rows=1000, dim=16, pooling=2, distribution=Uniform())
    ms = [Measurement(Strategy.L1, t, b, (0, 1000), (0, b), 1e-6 + 2 * b * 64 / 1e3) for b in (1, 4, 16, 64)]
    fixed = {"bag_s": 0.0, "local_row_s": 0.0}
    with pytest.raises(SpecError, match=r"unusable: local_bytes_per_s is .* B/s, less than 1e\+06 B/s"):
        fit_profile(ms, ascend, preset_profile(ascend), command="c", holdout_every=0, fixed=fixed)


@pytest.mark.parametrize("measured", ["1e-300", "5e-324", "1e300", "1e-10", "4000"])
def test_measured_times_outside_a_nanosecond_to_an_hour_are_refused(tmp_path: Path, measured: str) -> None:
    """1e-300 s gave a profile with relative errors of 1e300 %, 5e-324 s an internal error in the solver."""
    path = tmp_path / "measurements.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n{GOOD.replace('1.8e-05', measured)}\n")
    with pytest.raises(SpecError, match=r"measurements.csv line 3 column measured_s: must be between 1e-09 and 3600"):
        read_csv(path)


def test_a_csv_of_more_than_the_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embmap.cost_models import measurements

    path = tmp_path / "measurements.csv"
    path.write_text(f"{HEADER}\n" + f"{GOOD}\n" * 4)
    monkeypatch.setattr(measurements, "MAX_MEASUREMENTS", 3)
    with pytest.raises(SpecError, match="measurements.csv line 5: more than 3 measurements"):
        read_csv(path)
    monkeypatch.setattr(measurements, "MAX_CSV_BYTES", 100)  # refused by its size, before it is read
    with pytest.raises(SpecError, match=r"measurements.csv: is \d+ bytes, more than the 100 a CSV may hold"):
        read_csv(path)


def test_more_measurements_than_the_cap_are_refused_by_the_fit(
    ascend: TargetSpec, exact: list[Measurement], monkeypatch: pytest.MonkeyPatch
) -> None:
    from embmap.cost_models import calibrate

    monkeypatch.setattr(calibrate, "MAX_MEASUREMENTS", 10)
    with pytest.raises(SpecError, match="calibration: 11 measurements, more than the 10 one fit takes"):
        fit_profile(exact[:11], ascend, preset_profile(ascend), command="c")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"item_fixed_s": 0.0, "bag_s": 0.0, "index_s": 0.0}, "item_fixed_s \\+ bag_s \\+ index_s is 0.0 s"),
        (
            {"item_fixed_s": 1e-300, "bag_s": 0.0, "index_s": 0.0},
            "item_fixed_s \\+ bag_s \\+ index_s is 1e-300 s, less than 1e-09 s",
        ),
    ],
)
def test_the_profile_loader_refuses_a_profile_no_compile_can_use(
    tmp_path: Path, change: dict[str, float], problem: str
) -> None:
    """Items that cost nothing made every compile fail its own check ("lower_bound_s 1e-09 exceeds
    makespan_s 2e-12")."""
    from embmap.mapper.profiles import load_profile

    shipped = Path(__file__).resolve().parents[1] / "cost_models" / "profiles" / "cpu.json"
    data = json.loads(shipped.read_text()) | change
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=f"profile: {problem}"):
        load_profile(path, "cpu")
    assert load_profile(shipped, "cpu").target == "cpu"  # the shipped one passes
