"""pass@k: the chance that at least one of k samples is right, estimated without bias from n >= k samples.

Chen et al. 2021 (Codex, "Evaluating Large Language Models Trained on Code"), eq. 1: with c of n samples right,
pass@k = 1 - C(n - c, k) / C(n, k). The product form below is theirs too: it never forms the binomial
coefficients, which overflow floats for n in the hundreds.
"""

from __future__ import annotations

import math


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with `c` right answers among `n` samples."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n samples, got k={k} with n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got c={c} with n={n}")
    if n - c < k:  # every draw of k samples contains a right one
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
