"""Non-negative least squares: the Lawson-Hanson active-set method, numpy only (the fit's solver)."""

from __future__ import annotations

import numpy as np


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
