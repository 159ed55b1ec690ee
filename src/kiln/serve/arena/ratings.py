"""Bradley-Terry ratings of the arena's models, on an Elo-like scale, with bootstrap intervals.

The model (Bradley & Terry 1952): P(i beats j) = p_i / (p_i + p_j). As LMSYS's Chatbot Arena does, a tie (and a
"both bad") counts as half a win for each side, and a rating is 400 * log10(p) + 1000, so a 400-point gap means
10:1 odds. The fit is Newton's method on the log-likelihood, a few lines of numpy: scipy is not one of kiln's
run-time dependencies, and with the handful of models an arena has each fit takes well under a millisecond, so
the bootstrap's hundreds of refits run on every leaderboard request.

`prior` adds that many tied games between every model and a fixed anchor of rating 1000 (a weak pull towards
the middle): without it a model that won every vote has an infinite maximum-likelihood rating, and models that
never met have no common scale. `prior=0` is the plain maximum-likelihood fit (then ratings are centred so their
mean is 1000).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SCALE = 400.0  # Elo's: 400 points = 10:1 odds
BASE = 1000.0
DEFAULT_PRIOR = 1.0
DEFAULT_ROUNDS = 200  # bootstrap resamples
WIN_SCORE = {"a": 1.0, "b": 0.0, "tie": 0.5, "both_bad": 0.5}  # model_a's score in one battle


@dataclass(frozen=True)
class Game:
    """One vote: `model_a` scored `score_a` (1 win, 0 loss, 0.5 tie) against `model_b`."""

    model_a: str
    model_b: str
    score_a: float


def win_matrix(games: Sequence[Game], models: Sequence[str], weights: np.ndarray | None = None) -> np.ndarray:
    """W[i, j] = (weighted) wins of model i over model j, ties counted half to each."""
    index = {m: k for k, m in enumerate(models)}
    a = np.array([index[g.model_a] for g in games], dtype=np.int64)
    b = np.array([index[g.model_b] for g in games], dtype=np.int64)
    s = np.array([g.score_a for g in games], dtype=np.float64)
    w = np.ones(len(games)) if weights is None else weights
    out = np.zeros((len(models), len(models)))
    np.add.at(out, (a, b), w * s)
    np.add.at(out, (b, a), w * (1 - s))
    return out


def fit_strengths(wins: np.ndarray, prior: float = DEFAULT_PRIOR, iters: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Bradley-Terry strengths p (p_i > 0) maximising the likelihood of the win matrix (with `prior` tied games
    against an anchor of strength 1), by Newton's method on t = log p. The log-likelihood is concave in t, so a few
    Newton steps (each capped at 4 nats, which only matters far from the optimum) converge, where the classic MM
    iteration takes thousands when one model wins nearly everything, as small bootstrap resamples often do."""
    k = len(wins)
    games = wins + wins.T
    won = wins.sum(axis=1) + prior / 2
    t = np.zeros(k)
    for _ in range(iters):
        sig = 1 / (1 + np.exp(-(t[:, None] - t[None, :])))  # P(i beats j)
        anchor = 1 / (1 + np.exp(-t))  # P(i beats the anchor)
        grad = won - (games * sig).sum(axis=1) - prior * anchor
        w = games * sig * (1 - sig)
        hess = w - np.diag(w.sum(axis=1) + prior * anchor * (1 - anchor))
        # Without a prior, t + c fits as well as t: the Hessian is singular along (1, ..., 1); lstsq takes the
        # minimum-norm step, and the result is centred below.
        step = np.linalg.lstsq(hess, -grad, rcond=None)[0]
        step *= min(1.0, 4.0 / max(np.max(np.abs(step)), 1e-300))
        t = t + step
        if np.max(np.abs(step)) < tol:
            break
    if prior == 0:
        t -= t.mean()  # without the anchor the scale is free: centre the log-strengths
    return np.exp(t)


def to_rating(p: np.ndarray) -> np.ndarray:
    return SCALE * np.log10(p) + BASE


@dataclass
class Row:
    """One model's line of the leaderboard."""

    model: str
    rating: float
    ci_low: float
    ci_high: float
    votes: int
    wins: int
    losses: int
    ties: int
    win_rate: float
    """(wins + ties / 2) / votes: the share of its battles it won, a tie counted half."""


def leaderboard(
    games: Sequence[Game], *, prior: float = DEFAULT_PRIOR, rounds: int = DEFAULT_ROUNDS, seed: int = 0
) -> list[Row]:
    """Every model that has a vote, best first: its rating and a 95% bootstrap interval (the votes resampled
    with replacement `rounds` times from a seeded generator, so the same votes give the same intervals)."""
    if not games:
        return []
    models = sorted({g.model_a for g in games} | {g.model_b for g in games})
    ratings = to_rating(fit_strengths(win_matrix(games, models), prior))
    low = high = ratings
    if rounds > 0:
        rng = np.random.default_rng(seed)
        boot = np.empty((rounds, len(models)))
        for r in range(rounds):
            # len(games) votes drawn with replacement, as a count per vote (a weight in the win matrix).
            counts = rng.multinomial(len(games), np.full(len(games), 1 / len(games))).astype(np.float64)
            boot[r] = to_rating(fit_strengths(win_matrix(games, models, counts), prior))
        low, high = np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)
    rows = []
    for k, m in enumerate(models):
        mine = [(g.score_a if g.model_a == m else 1 - g.score_a) for g in games if m in (g.model_a, g.model_b)]
        wins, losses = sum(s == 1 for s in mine), sum(s == 0 for s in mine)
        ties = len(mine) - wins - losses
        rows.append(
            Row(m, float(ratings[k]), float(low[k]), float(high[k]), len(mine), wins, losses, ties,
                (wins + ties / 2) / len(mine))
        )  # fmt: skip
    rows.sort(key=lambda r: (-r.rating, r.model))
    return rows
