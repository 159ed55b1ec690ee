"""Published compute-optimal scaling laws, with the coefficients and tables of the papers they come from.

Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Chinchilla), arXiv:2203.15556:
- approach 1 (minimum over training curves) and approach 2 (IsoFLOP profiles) give power laws N_opt ∝ C^a with
  a = 0.50 and 0.49 (their Table 2); the constants of proportionality are not printed, only the optima the laws
  give for nine model sizes (Table 3 for approach 1, Table A3 for approaches 2 and 3). `AllocationLaw` keeps
  those rows and fits the one missing constant through them with the exponent fixed at Table 2's value.
- approach 3 fits L(N, D) = E + A/N^α + B/D^β: E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28 (their
  eq. 10 / Appendix D.2); minimising it under C = 6ND gives N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b with
  G = (αA / βB)^(1/(α+β)), a = β/(α+β), b = α/(α+β) (their eq. 4).

Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", arXiv:2404.10102, refit approach 3 on data
read off Hoffmann et al.'s Figure 4 and found the published coefficients inconsistent with the paper's own
approach-3 table (they give ~25% fewer parameters than Table A3; see `tests/plan/test_laws.py`):
E = 1.8172, A = 482.01, B = 2085.43, α = 0.3478, β = 0.3658 (their eq. 2), which implies ~20 tokens per
parameter, in line with approaches 1 and 2.

All of these count N as *all* parameters, embeddings included (Hoffmann et al. §2), unlike Kaplan et al. 2020
who excluded embeddings; `kiln plan` shows both counts for the chosen shape because the tokens-per-parameter
ratio changes with the convention (Pearce & Song 2024 trace most of the Kaplan-Chinchilla gap to it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# (parameters, training FLOPs, training tokens) rows: the optima each approach predicts for nine model sizes.
# Hoffmann et al. 2022 Table 3 (approach 1).
HOFFMANN_TABLE3_APPROACH1: tuple[tuple[float, float, float], ...] = (
    (400e6, 1.92e19, 8.0e9),
    (1e9, 1.21e20, 20.2e9),
    (10e9, 1.23e22, 205.1e9),
    (67e9, 5.76e23, 1.5e12),
    (175e9, 3.85e24, 3.7e12),
    (280e9, 9.90e24, 5.9e12),
    (520e9, 3.43e25, 11.0e12),
    (1e12, 1.27e26, 21.2e12),
    (10e12, 1.30e28, 216.2e12),
)
# Hoffmann et al. 2022 Table A3, approach 2 (IsoFLOP profiles).
HOFFMANN_TABLEA3_APPROACH2: tuple[tuple[float, float, float], ...] = (
    (400e6, 1.84e19, 7.7e9),
    (1e9, 1.20e20, 20.0e9),
    (10e9, 1.32e22, 219.5e9),
    (67e9, 6.88e23, 1.7e12),
    (175e9, 4.54e24, 4.3e12),
    (280e9, 1.18e25, 7.1e12),
    (520e9, 4.19e25, 13.4e12),
    (1e12, 1.59e26, 26.5e12),
    (10e12, 1.75e28, 292.0e12),
)
# Hoffmann et al. 2022 Table A3, approach 3 (the parametric fit, as the paper tabulates it).
HOFFMANN_TABLEA3_APPROACH3: tuple[tuple[float, float, float], ...] = (
    (400e6, 2.21e19, 9.2e9),
    (1e9, 1.62e20, 27.1e9),
    (10e9, 2.46e22, 410.1e9),
    (67e9, 1.71e24, 4.1e12),
    (175e9, 1.26e25, 12.0e12),
    (280e9, 3.52e25, 20.1e12),
    (520e9, 1.36e26, 43.5e12),
    (1e12, 5.65e26, 94.1e12),
    (10e12, 8.11e28, 1425.5e12),
)


@dataclass(frozen=True)
class LossLaw:
    """L(N, D) = E + A/N^alpha + B/D^beta: loss (nats/token) after D tokens with N parameters."""

    name: str
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    source: str

    def loss(self, n: float, d: float) -> float:
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @property
    def a(self) -> float:
        """N_opt ∝ C^a."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """D_opt ∝ C^b."""
        return self.alpha / (self.alpha + self.beta)

    def optimal(self, flops: float) -> tuple[float, float]:
        """(N, D) minimising L under 6ND = flops (Hoffmann et al. 2022 eq. 4)."""
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        return g * (flops / 6) ** self.a, (flops / 6) ** self.b / g


@dataclass(frozen=True)
class AllocationLaw:
    """N_opt = k·C^a, D_opt = C / (6·N_opt): a published exponent, the constant k fitted (least squares in log
    space, exponent held fixed) through the paper's own table of optima."""

    name: str
    a: float
    table: tuple[tuple[float, float, float], ...]
    source: str

    @property
    def k(self) -> float:
        return math.exp(sum(math.log(n) - self.a * math.log(c) for n, c, _ in self.table) / len(self.table))

    def optimal(self, flops: float) -> tuple[float, float]:
        n = self.k * flops**self.a
        return n, flops / (6 * n)

    def flops_for(self, n: float) -> float:
        """The budget for which N is compute-optimal (the inverse of `optimal`)."""
        return (n / self.k) ** (1 / self.a)


HOFFMANN_APPROACH3_LAW = LossLaw(
    "Hoffmann approach 3 (fitted law)", 1.69, 406.4, 410.7, 0.34, 0.28, "Hoffmann et al. 2022 eq. 10, App. D.2"
)
BESIROGLU_LAW = LossLaw(
    "Besiroglu et al. 2024 refit", 1.8172, 482.01, 2085.43, 0.3478, 0.3658, "Besiroglu et al. 2024 eq. 2"
)
APPROACH1 = AllocationLaw("Hoffmann approach 1", 0.50, HOFFMANN_TABLE3_APPROACH1, "Hoffmann et al. 2022 Tables 2, 3")
APPROACH2 = AllocationLaw("Hoffmann approach 2", 0.49, HOFFMANN_TABLEA3_APPROACH2, "Hoffmann et al. 2022 Tables 2, A3")
APPROACH3_TABLE = AllocationLaw(
    "Hoffmann approach 3 (table)", 0.46, HOFFMANN_TABLEA3_APPROACH3, "Hoffmann et al. 2022 Tables 2, A3"
)

LAWS: dict[str, AllocationLaw | LossLaw] = {
    "approach1": APPROACH1,
    "approach2": APPROACH2,
    "approach3": APPROACH3_TABLE,
    "approach3-law": HOFFMANN_APPROACH3_LAW,
    "besiroglu": BESIROGLU_LAW,
}
"""The laws `kiln plan` reports, by the name its `law` option takes."""

LOSS_LAWS: tuple[LossLaw, ...] = (HOFFMANN_APPROACH3_LAW, BESIROGLU_LAW)
"""The laws that predict a loss (approaches 1 and 2 only allocate compute)."""
