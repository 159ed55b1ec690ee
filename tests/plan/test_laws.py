"""The published laws against the papers' own numbers (Hoffmann et al. 2022 Tables 3 and A3, Chinchilla's budget,
Besiroglu et al. 2024)."""

from __future__ import annotations

import pytest

from kiln.plan.laws import (
    APPROACH1,
    APPROACH2,
    APPROACH3_TABLE,
    BESIROGLU_LAW,
    HOFFMANN_APPROACH3_LAW,
)

CHINCHILLA_FLOPS = 5.76e23  # Gopher's budget, which Chinchilla (70B, 1.4T tokens) was trained on


def test_chinchilla_budget_gives_70b_and_1_4t_under_approach_1() -> None:
    n, d = APPROACH1.optimal(CHINCHILLA_FLOPS)
    assert n == pytest.approx(70e9, rel=0.15)
    assert d == pytest.approx(1.4e12, rel=0.15)
    assert 6 * n * d == pytest.approx(CHINCHILLA_FLOPS)


@pytest.mark.parametrize("law", [APPROACH1, APPROACH2, APPROACH3_TABLE], ids=lambda law: law.name)
def test_exponent_of_table_2_reproduces_every_row_of_the_papers_table(law) -> None:
    """One fitted constant and Table 2's rounded exponent give each of the nine tabulated optima to within 5%
    (the table's own rounding of a to two digits over nine decades of compute)."""
    for n, c, d in law.table:
        got_n, got_d = law.optimal(c)
        assert got_n == pytest.approx(n, rel=0.05), (law.name, n)
        assert got_d == pytest.approx(d, rel=0.08), (law.name, n)
    # and the local slope between the table's ends is the published exponent
    import math

    (n0, c0, _), (n1, c1, _) = law.table[0], law.table[-1]
    assert math.log(n1 / n0) / math.log(c1 / c0) == pytest.approx(law.a, abs=0.01)


def test_approach_3_fitted_law_has_the_exponents_hoffmann_report() -> None:
    """Table 2: approach 3 gives a = 0.46 and b = 0.54 (from alpha = 0.34, beta = 0.28 to two digits)."""
    law = HOFFMANN_APPROACH3_LAW
    assert law.a == pytest.approx(0.46, abs=0.01)
    assert law.b == pytest.approx(0.54, abs=0.01)
    assert law.a + law.b == pytest.approx(1.0)


def test_published_approach_3_coefficients_fall_short_of_table_a3_as_besiroglu_report() -> None:
    """Besiroglu et al. 2024 §3: Hoffmann's rounded (E, A, B, alpha, beta) do not reproduce Table A3; they give
    markedly smaller models. kiln keeps both, and this pins the documented gap (15-35% fewer parameters)."""
    for n, c, _ in APPROACH3_TABLE.table:
        got, _ = HOFFMANN_APPROACH3_LAW.optimal(c)
        assert 0.65 < got / n < 0.85, n


def test_besiroglu_refit_gives_about_20_tokens_per_parameter_at_chinchilla_scale() -> None:
    """Besiroglu et al.: their refit implies ~20 tokens per parameter, consistent with approaches 1 and 2 and
    with Chinchilla itself (70B parameters, 1.4T tokens)."""
    n, d = BESIROGLU_LAW.optimal(CHINCHILLA_FLOPS)
    assert 15 < d / n < 25
    assert n == pytest.approx(70e9, rel=0.15)


def test_optimum_minimises_the_loss_along_the_isoflop_line() -> None:
    """The closed form (Hoffmann eq. 4) is the minimum of L(N, C/6N): a brute-force scan agrees."""
    import numpy as np

    for law in (HOFFMANN_APPROACH3_LAW, BESIROGLU_LAW):
        for c in (1e19, 1e22, 1e25):
            n_grid = np.logspace(6, 14, 20001)
            losses = law.E + law.A / n_grid**law.alpha + law.B / (c / (6 * n_grid)) ** law.beta
            assert n_grid[losses.argmin()] == pytest.approx(law.optimal(c)[0], rel=2e-3)


def test_loss_is_the_fitted_formula() -> None:
    """L(N, D) = E + A/N^a + B/D^b, at Chinchilla's own N and D (hand-evaluated)."""
    n, d = 70e9, 1.4e12
    expected = 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28
    assert HOFFMANN_APPROACH3_LAW.loss(n, d) == pytest.approx(expected)
    assert 1.9 < expected < 2.0
