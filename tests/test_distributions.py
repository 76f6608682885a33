"""Rank histograms against closed forms and Monte Carlo draws."""

from __future__ import annotations

import numpy as np
import pytest

from embmap.ir.distributions import histogram
from embmap.ir.spec import HotSet, Uniform, Zipf


def test_uniform_expected_distinct_closed_form() -> None:
    h = histogram(Uniform(), 1000)
    n = 700
    assert h.expected_distinct(n) == pytest.approx(1000 * (1 - (1 - 1 / 1000) ** n), rel=1e-12)
    assert h.top_mass(250) == pytest.approx(0.25)


@pytest.mark.parametrize("dist", [Zipf(alpha=1.05), Zipf(alpha=0.6), HotSet(hot_rows=5, hot_mass=0.95)])
def test_expected_distinct_matches_sampling(dist: Zipf | HotSet) -> None:
    rows, n, trials = 5000, 2000, 200
    h = histogram(dist, rows)
    probs = np.repeat(h.probs, h.counts.astype(int))
    rng = np.random.default_rng(0)
    seen = [len(np.unique(rng.choice(rows, size=n, p=probs / probs.sum()))) for _ in range(trials)]
    assert h.expected_distinct(n) == pytest.approx(np.mean(seen), rel=0.02)


def test_bucketed_zipf_tail_agrees_with_exact() -> None:
    """Above EXACT_ZIPF_ROWS the tail is bucketed; its statistics must agree with the exact sum."""
    rows, alpha = 200_000, 1.1
    h = histogram(Zipf(alpha=alpha), rows)
    assert len(h.counts) < 5_000
    weights = np.arange(1, rows + 1, dtype=np.float64) ** -alpha
    p = weights / weights.sum()
    for n in (1_000, 100_000):
        exact = float(np.sum(-np.expm1(n * np.log1p(-p))))
        assert h.expected_distinct(n) == pytest.approx(exact, rel=0.005)
    for m in (10, 4096, 50_000):
        assert h.top_mass(m) == pytest.approx(float(p[:m].sum()), rel=0.005)
    assert float((h.counts * h.probs).sum()) == pytest.approx(1.0)
    assert h.rows == rows


def test_hot_set_mass_and_degenerate_cases() -> None:
    h = histogram(HotSet(hot_rows=10, hot_mass=0.9), 1000)
    assert h.top_mass(10) == pytest.approx(0.9)
    assert h.expected_distinct(10**9) == pytest.approx(1000)
    assert histogram(HotSet(hot_rows=50), 20).top_mass(10) == pytest.approx(0.5)  # more hot rows than rows: uniform
    assert histogram(Zipf(), 1).expected_distinct(5) == pytest.approx(1.0)
