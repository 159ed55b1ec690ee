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
