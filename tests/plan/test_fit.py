"""The fits recover a known law from synthetic IsoFLOP losses (the true exponents inside the bootstrap intervals)."""

from __future__ import annotations

import numpy as np
import pytest

from kiln.plan.fit import bootstrap, fit_approach2, fit_approach3
from kiln.plan.laws import LossLaw

TRUE = LossLaw("synthetic", E=1.2, A=300.0, B=900.0, alpha=0.36, beta=0.30, source="test")


def isoflop_grid(noise: float, seed: int = 0):
    """5 budgets x 7 sizes around each budget's true optimum, losses with multiplicative log-normal noise."""
    rng = np.random.default_rng(seed)
    c, n = [], []
    for budget in np.logspace(16, 20, 5):
        n_opt = TRUE.optimal(budget)[0]
        for ratio in np.logspace(-1, 1, 7):
            c.append(budget)
            n.append(n_opt * ratio)
    c, n = np.array(c), np.array(n)
    d = c / (6 * n)
    loss = TRUE.loss(n, d) * np.exp(rng.normal(0, noise, size=n.shape))
    return c, n, d, loss


def test_approach2_recovers_the_optimum_exponent_without_noise() -> None:
    c, n, _, loss = isoflop_grid(noise=0.0)
    fit = fit_approach2(c, n, loss)
    assert fit is not None and len(fit.optima) == 5
    assert fit.a == pytest.approx(TRUE.a, abs=0.02)
    for budget, n_opt in fit.optima.items():
        assert n_opt == pytest.approx(TRUE.optimal(budget)[0], rel=0.15)


def test_approach3_recovers_the_law_without_noise() -> None:
    _, n, d, loss = isoflop_grid(noise=0.0)
    law = fit_approach3(n, d, loss)
    assert law.alpha == pytest.approx(TRUE.alpha, abs=0.01)
    assert law.beta == pytest.approx(TRUE.beta, abs=0.01)
    assert pytest.approx(TRUE.E, rel=0.02) == law.E


def test_true_exponents_lie_inside_the_bootstrap_intervals_with_noise() -> None:
    c, n, d, loss = isoflop_grid(noise=0.005, seed=1)
    law = fit_approach3(n, d, loss)
    ci = bootstrap(c, n, d, loss, law, samples=40, seed=2)
    for key, true in (("alpha", TRUE.alpha), ("beta", TRUE.beta), ("approach3_a", TRUE.a), ("approach2_a", TRUE.a)):
        lo, hi = ci[key]
        assert lo <= true <= hi, (key, lo, true, hi)
        assert hi - lo < 0.3, key  # informative, not everything-goes
    assert ci["alpha"][0] <= law.alpha <= ci["alpha"][1]


def test_a_budget_without_an_interior_minimum_is_left_out() -> None:
    c = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
    n = np.array([1.0, 2.0, 4.0, 1.0, 2.0, 4.0])
    assert fit_approach2(c, n, np.array([3.0, 2.0, 1.0, 3.0, 2.0, 1.5])) is None  # decreasing, no vertex


def test_bootstrap_starts_from_a_fit_whose_floor_underflowed_to_zero() -> None:
    """A real sweep's runs (tiny models, 2026-12-06) whose fitted E came out as exp(< -745) = 0.0: the bootstrap's
    refits start from the full fit in log space and must not fail on log(0)."""
    from kiln.plan.fit import LawFit

    c = np.array([5e9, 5e9, 1e10, 1e10, 2e10, 2e10, 2e10])
    n = np.array([20640.0, 115136.0, 20640.0, 115136.0, 20640.0, 115136.0, 344928.0])
    d = np.array([35840.0, 6144.0, 72704.0, 12288.0, 146432.0, 25600.0, 8192.0])
    loss = np.array([3.12986469, 3.58350742, 2.80122209, 3.25203514, 2.50678194, 2.92820907, 3.31890237])
    law = LawFit(E=0.0, A=9.79214549730838, B=13.329520864007048, alpha=0.25984843995470913,
                 beta=0.1667805160594454, objective=5.058232522277013e-05)  # fmt: skip
    ci = bootstrap(c, n, d, loss, law, samples=3, seed=1337)
    for key in ("A", "B", "alpha", "beta"):
        lo, hi = ci[key]
        assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi
    assert ci["E"][0] >= 0.0
