"""Fitting a scaling law to your own runs, as Hoffmann et al. 2022 did (§3.2, §3.3, Appendix D.2).

Approach 2: for each compute budget, a parabola in log N through the final losses of its runs; its vertex is
that budget's compute-optimal size, and a line through (log C, log N_opt) gives N_opt ∝ C^a.

Approach 3: L(N, D) = E + A/N^α + B/D^β, fitted by minimising the Huber loss (δ = 1e-3) between the predicted and
observed log loss, with log A, log B, log E as the free parameters so that the prediction is one logsumexp,
by L-BFGS-B from a grid of starting points (Hoffmann's grid, thinned; L-BFGS-B from the 4 best of its points).

Confidence intervals: the percentile bootstrap (resample the runs with replacement, refit, take the 2.5th and
97.5th percentiles), as Besiroglu et al. 2024 do for their refit.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from kiln.plan.extras import need

HUBER_DELTA = 1e-3


@dataclass
class Approach2:
    """Per-budget optima and the power law through them."""

    optima: dict[float, float]
    """Compute budget -> the vertex of its parabola (parameters)."""
    a: float
    """N_opt ∝ C^a."""
    k: float
    """N_opt = k·C^a."""
    parabolas: dict[float, list[float]]
    """Compute budget -> [c2, c1, c0] of L = c2·x² + c1·x + c0 with x = ln N."""


def fit_approach2(c: np.ndarray, n: np.ndarray, loss: np.ndarray) -> Approach2 | None:
    """None when fewer than two budgets have a parabola that opens upwards (no interior minimum to find)."""
    optima, parabolas = {}, {}
    for budget in np.unique(c):
        sel = c == budget
        x = np.log(n[sel])
        if len(np.unique(x)) < 3:
            continue
        c2, c1, c0 = np.polyfit(x, loss[sel], 2)
        if c2 <= 0 or not x.min() <= -c1 / (2 * c2) <= x.max():
            continue  # no minimum inside the sizes tried: extrapolating a parabola's vertex is not a measurement
        optima[float(budget)] = float(math.exp(-c1 / (2 * c2)))
        parabolas[float(budget)] = [float(c2), float(c1), float(c0)]
    if len(optima) < 2:
        return None
    slope, intercept = np.polyfit(np.log(list(optima)), np.log(list(optima.values())), 1)
    return Approach2(optima, float(slope), float(math.exp(intercept)), parabolas)


@dataclass
class LawFit:
    """L(N, D) = E + A/N^alpha + B/D^beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float

    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.beta)

    def loss(self, n: np.ndarray | float, d: np.ndarray | float) -> np.ndarray | float:
        return self.E + self.A / np.power(n, self.alpha) + self.B / np.power(d, self.beta)


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> tuple[float, np.ndarray]:
    """Huber loss of log L and its gradient in (a, b, e, alpha, beta): A = e^a, B = e^b, E = e^e."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    w = np.exp(terms - top)
    total = w.sum(axis=0)
    pred = top + np.log(total)
    w /= total
    r = pred - log_l
    small = np.abs(r) <= HUBER_DELTA
    value = np.where(small, 0.5 * r**2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA)).sum()
    dr = np.where(small, r, HUBER_DELTA * np.sign(r))
    grad = np.array([
        (dr * w[0]).sum(), (dr * w[1]).sum(), (dr * w[2]).sum(),
        -(dr * w[0] * log_n).sum(), -(dr * w[1] * log_d).sum(),
    ])  # fmt: skip
    return float(value), grad


GRID = list(itertools.product([0.0, 5.0, 10.0, 15.0], [0.0, 5.0, 10.0, 15.0], [-1.0, 0.0, 1.0], [0.2, 0.5, 1.0],
                              [0.2, 0.5, 1.0]))  # fmt: skip
"""Starting points (a, b, e, alpha, beta): Hoffmann et al.'s grid (App. D.2), thinned to 432 starts."""


# The objective is tiny (Huber with delta = 1e-3 on log losses), so scipy's default absolute tolerances stop
# L-BFGS-B almost where it starts; bootstrap refits from the full fit would then all return the full fit.
TOLERANCES = {"ftol": 1e-14, "gtol": 1e-12, "maxiter": 2000}


def best_starts(n: np.ndarray, d: np.ndarray, loss: np.ndarray, k: int) -> list:
    """The `k` grid points with the lowest objective: one L-BFGS-B run costs ~50 ms (the Huber loss's tiny
    gradients make it take many steps), so running all 432 per fit, and again per bootstrap resample, would
    take minutes; the best of the grid's starting values is where the best optimum is found in practice."""
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    values = [_objective(np.array(g), log_n, log_d, log_l)[0] for g in GRID]
    return [GRID[i] for i in np.argsort(values)[:k]]


def fit_approach3(n: np.ndarray, d: np.ndarray, loss: np.ndarray, starts: list | None = None) -> LawFit:
    """The fitted law, from `starts` (None: the 4 best points of the grid)."""
    optimize = need("scipy.optimize")
    threadpoolctl = need("threadpoolctl")
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    best = None
    bounds = [(None, None), (None, None), (None, None), (0.0, 3.0), (0.0, 3.0)]
    # L-BFGS-B's BLAS calls are on 5-vectors: threads gain nothing, and on a busy machine OpenBLAS's spinning
    # workers made each fit ~8x slower (2.2 s -> 0.28 s for 13 runs with one thread).
    with threadpoolctl.threadpool_limits(1):
        for start in starts if starts is not None else best_starts(n, d, loss, 4):
            res = optimize.minimize(_objective, np.array(start, dtype=float), args=(log_n, log_d, log_l), jac=True,
                                    method="L-BFGS-B", bounds=bounds, options=TOLERANCES)  # fmt: skip
            if best is None or res.fun < best.fun:
                best = res
    a, b, e, alpha, beta = best.x
    return LawFit(math.exp(e), math.exp(a), math.exp(b), float(alpha), float(beta), float(best.fun))


def _interval(values: list[float]) -> list[float]:
    if not values:
        return [math.nan, math.nan]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def _log(v: float) -> float:
    """log(v), or the log of the smallest normal double where a fitted term underflowed to 0: the fit works in log
    space, and a sweep whose losses carry no floor (E) drives log E past -745, where exp gives 0.0 (seen on a sweep
    of one- to three-layer models, 2026-12-06); refits then start from "E as small as a double goes"."""
    return math.log(v) if v > 0 else math.log(np.finfo(float).tiny)


def bootstrap(c: np.ndarray, n: np.ndarray, d: np.ndarray, loss: np.ndarray, law: LawFit | None, *,
              samples: int, seed: int = 0) -> dict[str, list[float]]:  # fmt: skip
    """95% percentile intervals of approach 2's exponent and approach 3's parameters over `samples` resamples of
    the runs (approach 2 resamples within each budget, so every budget keeps its runs' count). Approach 3's
    refits start from the full fit's optimum, so a resample costs one L-BFGS-B run."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {k: [] for k in ("approach2_a", "E", "A", "B", "alpha", "beta", "approach3_a")}
    starts = None
    if law is not None:
        starts = [[_log(law.A), _log(law.B), _log(law.E), law.alpha, law.beta]]
    for _ in range(samples):
        idx = np.concatenate([rng.choice(np.flatnonzero(c == b), size=int((c == b).sum())) for b in np.unique(c)])
        fit2 = fit_approach2(c[idx], n[idx], loss[idx])
        if fit2 is not None:
            out["approach2_a"].append(fit2.a)
        if law is not None:
            f = fit_approach3(n[idx], d[idx], loss[idx], starts)
            for key in ("E", "A", "B", "alpha", "beta", "a"):
                out["approach3_a" if key == "a" else key].append(getattr(f, key))
    return {k: _interval(v) for k, v in out.items()}
