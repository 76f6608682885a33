"""`embmap bench`, the statistics: paired speedups (a rival's p50 over embmap's in the same round), the sign
test's interval around their median, the losses beyond noise, and the summaries over cases."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embmap.mapper.bench.run import Row
    from embmap.runtime.limits import Limits


CONFIDENCE = 0.9  # of the interval around a measured speedup's median


@dataclass(frozen=True)
class PairedSpeedup:
    """A baseline's p50 over embmap's p50 in the same interleaved round (above 1: embmap faster): the median
    over rounds, and an interval that holds the true median with probability CONFIDENCE, or None when there
    are too few rounds for one. Pairing by round cancels what changes between rounds (another tenant's load)."""

    median: float
    interval: tuple[float, float] | None
    rounds: int

    @property
    def slower_beyond_noise(self) -> bool:
        return self.interval is not None and self.interval[1] < 1.0


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The narrowest pair of order statistics (x(k), x(n+1-k)) that holds the median of the distribution the
    values were drawn from with probability >= `confidence`: 1 - 2 P(Binomial(n, 1/2) <= k - 1), the sign
    test's interval, which assumes nothing about the distribution. None when even (min, max) holds it with less
    (fewer than 5 values at 90%)."""
    xs = sorted(values)
    k = interval_rank(len(xs), confidence)
    return (xs[k - 1], xs[len(xs) - k]) if k else None


def false_alarm(rounds: int, confidence: float = CONFIDENCE) -> float:
    """The probability that two equally fast plans measure as a loss beyond noise in `rounds` rounds: that the
    interval's upper end, x(n+1-k), falls below 1, i.e. P(Binomial(n, 1/2) <= k - 1)."""
    k = interval_rank(rounds, confidence)
    return sum(math.comb(rounds, j) for j in range(k)) / 2.0**rounds if k else 0.0


def interval_rank(n: int, confidence: float) -> int:
    """The largest k with 1 - 2 P(Binomial(n, 1/2) <= k - 1) >= confidence, or 0 if there is none."""
    below, best = 0.0, 0
    for k in range(1, n // 2 + 1):
        below += math.comb(n, k - 1) / 2.0**n
        if 1.0 - 2.0 * below < confidence:
            break
        best = k
    return best


def same_plan(ours: Row, theirs: Row) -> bool:
    """Whether the two pipelines' cpu plans run the same work the same way (their measured ratio is noise)."""
    return bool(ours.cpu_work_digest) and ours.cpu_work_digest == theirs.cpu_work_digest


def paired_speedup(ours: Row, theirs: Row) -> PairedSpeedup | None:
    """None where nothing was measured, or where both pipelines made the same plan."""
    if same_plan(ours, theirs):
        return None
    return _paired(ours.measured_runs_s, theirs.measured_runs_s)


def _paired(ours_s: Sequence[float], theirs_s: Sequence[float]) -> PairedSpeedup | None:
    rounds = [t / o for o, t in zip(ours_s, theirs_s, strict=True) if o and t]
    if not rounds:
        return None
    return PairedSpeedup(statistics.median(rounds), median_interval(rounds), len(rounds))


def losses(rows: Sequence[Row]) -> list[str]:
    """Cases where embmap's plan is slower than a baseline's: predicted at all (plans only: a framework has no
    prediction), or measured beyond run-to-run noise (the whole interval of the paired speedup below 1, and
    again when measured again), against a plan or a framework."""
    found = []
    for (w, s), case in by_case(rows).items():
        ours = case.get("embmap")
        if ours is None:
            continue
        for p, r in case.items():
            if p == "embmap":
                continue
            for target, mine, theirs in (
                ("ascend910", ours.ascend_makespan_s, r.ascend_makespan_s),
                ("cpu", ours.cpu_makespan_s, r.cpu_makespan_s),
            ):
                if mine is not None and theirs is not None and mine > theirs * (1 + 1e-9):
                    found.append(
                        f"{w} / {s}: predicted on {target}, embmap {mine * 1e6:.1f} us vs {p} {theirs * 1e6:.1f} us"
                    )
    for w, s, p, paired, again in comparisons(rows):
        if paired.slower_beyond_noise and (again is None or again.slower_beyond_noise):
            found.append(
                f"{w} / {s}: measured on this machine, embmap's plan takes {1 / paired.median:.2f}x the time "
                f"of {p}'s ({_paired_text(paired)})" + (f"; measured again: {_paired_text(again)}" if again else "")
            )
    return found


def unconfirmed_losses(rows: Sequence[Row]) -> list[str]:
    """Measured losses beyond noise that did not hold when the two were measured again."""
    return [
        f"{w} / {s} vs {p}: {_paired_text(paired)}; measured again: {_paired_text(again)}"
        for w, s, p, paired, again in comparisons(rows)
        if paired.slower_beyond_noise and again is not None and not again.slower_beyond_noise
    ]


def measured_slower(rows: Sequence[Row]) -> list[tuple[str, str, str, float]]:
    """(workload, scenario, baseline, speedup) wherever embmap's paired speedup is below 1, noise or not."""
    return [(w, s, p, paired.median) for w, s, p, paired, _ in comparisons(rows) if paired.median < 1.0]


def comparisons(rows: Sequence[Row]) -> Iterator[tuple[str, str, str, PairedSpeedup, PairedSpeedup | None]]:
    """(workload, scenario, baseline, paired speedup, the same measured again or None) for every measured
    comparison of embmap's plan with a different plan or a framework."""
    for (w, s), case in by_case(rows).items():
        ours = case.get("embmap")
        for p, r in case.items():
            paired = paired_speedup(ours, r) if ours and p != "embmap" else None
            if paired:
                yield w, s, p, paired, _paired(r.recheck_ours_s, r.recheck_theirs_s)


def _paired_text(paired: PairedSpeedup) -> str:
    text = f"speedup {paired.median:.2f}x, median of {paired.rounds} rounds"
    if paired.interval:
        text += f", {CONFIDENCE:.0%} interval {paired.interval[0]:.3f}x-{paired.interval[1]:.3f}x"
    return text


FASTER = "faster framework"  # per case, the framework whose median run is faster


@dataclass(frozen=True)
class SpeedupSummary:
    """A pipeline's measured paired speedups over one rival, across the cases: each case's is the median over
    rounds of the rival's p50 / the pipeline's p50 in the same round (`PairedSpeedup.median`)."""

    pipeline: str
    rival: str  # a framework or a plan pipeline, or FASTER
    cases: int
    geomean: float
    worst: float
    worst_case: str  # "workload / scenario"
    slower_beyond_noise: int  # cases with the whole interval below 1 (and again, where measured again)


def speedup_summary(rows: Sequence[Row], pipeline: str, rival: str) -> SpeedupSummary | None:
    """`pipeline`'s paired speedups over `rival` (FASTER: per case, the faster framework), or None where no
    case measured both. Only embmap's losses were measured again, so only embmap's count that."""
    found: list[tuple[str, float, bool]] = []
    for (w, s), case in by_case(rows).items():
        ours = case.get(pipeline)
        theirs = _faster_framework(case) if rival == FASTER else case.get(rival)
        paired = paired_speedup(ours, theirs) if ours and theirs else None
        if paired is None or theirs is None:
            continue
        again = _paired(theirs.recheck_ours_s, theirs.recheck_theirs_s) if pipeline == "embmap" else None
        beyond = paired.slower_beyond_noise and (again is None or again.slower_beyond_noise)
        found.append((f"{w} / {s}", paired.median, beyond))
    if not found:
        return None
    worst = min(found, key=lambda f: f[1])
    return SpeedupSummary(
        pipeline=pipeline,
        rival=rival,
        cases=len(found),
        geomean=statistics.geometric_mean([f[1] for f in found]),
        worst=worst[1],
        worst_case=worst[0],
        slower_beyond_noise=sum(f[2] for f in found),
    )


def framework_summary(rows: Sequence[Row]) -> list[SpeedupSummary]:
    """embmap against each framework and, where there are several, against the faster one per case; and the
    `default` plan against torch: both split every batch evenly over the cores, so what separates them is the
    executor's own overhead."""
    frameworks = framework_names(rows)
    wanted = [("embmap", f) for f in frameworks]
    if len(frameworks) > 1:
        wanted.append(("embmap", FASTER))
    if "torch" in frameworks:
        wanted.append(("default", "torch"))
    found = (speedup_summary(rows, pipeline, rival) for pipeline, rival in wanted)
    return [f for f in found if f is not None]


def _faster_framework(case: dict[str, Row]) -> Row | None:
    """The case's framework row with the faster median run (the first on a tie), or None."""
    measured = [r for r in case.values() if r.is_framework and r.measured_median_s is not None]
    return min(measured, key=lambda r: r.measured_median_s or 0.0) if measured else None


def by_case(rows: Sequence[Row]) -> dict[tuple[str, str], dict[str, Row]]:
    cases: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        cases.setdefault((r.workload, r.scenario), {})[r.pipeline] = r
    return cases


def framework_names(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r.pipeline for r in rows if r.is_framework))


def baseline_names(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r.pipeline for r in rows if not r.is_framework and r.pipeline != "embmap"))


def gathered_bytes_per_s(row: Row) -> float | None:
    """Bytes of table rows gathered per second in the row's best run."""
    if row.bytes_per_batch is None or not row.measured_best_s:
        return None
    return row.bytes_per_batch / row.measured_best_s


def gather_share(row: Row, limits: Limits | None) -> float | None:
    """The row's gathered bytes per second over the gather limit at its mean row size."""
    rate = gathered_bytes_per_s(row)
    if limits is None or rate is None or row.row_bytes is None:
        return None
    return rate / limits.gather_limit(row.row_bytes)
