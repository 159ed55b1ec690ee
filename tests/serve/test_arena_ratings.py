"""The arena's Bradley-Terry leaderboard against independent computations: a hand-worked two-model case, the
likelihood maximised by scipy's optimiser (a logistic regression, ties as half wins), the round-robin property
that ratings order models by their wins, and seeded bootstrap intervals."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy.optimize import minimize

from kiln.serve.arena.export import to_pair
from kiln.serve.arena.ratings import Game, fit_strengths, leaderboard, to_rating, win_matrix


def scipy_ratings(games: list[Game], models: list[str], prior: float = 0.0) -> np.ndarray:
    """Maximum likelihood by a general-purpose optimiser over the log-strengths: each game a logistic term
    s*log(sigmoid(t_a - t_b)) + (1-s)*log(sigmoid(t_b - t_a)); the prior as ties against an anchor at t = 0."""
    index = {m: i for i, m in enumerate(models)}

    def nll(t: np.ndarray) -> float:
        total = 0.0
        for g in games:
            d = t[index[g.model_a]] - t[index[g.model_b]]
            total -= g.score_a * -np.logaddexp(0, -d) + (1 - g.score_a) * -np.logaddexp(0, d)
        total -= prior * 0.5 * sum(-np.logaddexp(0, -x) - np.logaddexp(0, x) for x in t)
        return total

    t = minimize(nll, np.zeros(len(models)), method="BFGS", options={"gtol": 1e-10}).x
    if prior == 0:
        t -= t.mean()
    return 400 * t / math.log(10) + 1000


def test_two_models_hand_worked():
    # A beat B three times and lost once: p_A / p_B = 3, so A is 400 log10(3) = 190.8 points above B.
    games = [Game("A", "B", 1), Game("A", "B", 1), Game("B", "A", 0), Game("B", "A", 1)]
    rows = {r.model: r for r in leaderboard(games, prior=0, rounds=0)}
    assert rows["A"].rating - rows["B"].rating == pytest.approx(400 * math.log10(3), abs=1e-6)
    assert rows["A"].rating + rows["B"].rating == pytest.approx(2000, abs=1e-6)  # centred on 1000
    assert (rows["A"].wins, rows["A"].losses, rows["A"].votes, rows["A"].win_rate) == (3, 1, 4, 0.75)
    # A tie is half a win each: 2 wins, 1 loss, 1 tie -> 2.5 : 1.5.
    games[0] = Game("A", "B", 0.5)
    rows = {r.model: r for r in leaderboard(games, prior=0, rounds=0)}
    assert rows["A"].rating - rows["B"].rating == pytest.approx(400 * math.log10(2.5 / 1.5), abs=1e-6)
    assert (rows["A"].ties, rows["B"].ties, rows["A"].win_rate) == (1, 1, 0.625)


@pytest.mark.parametrize("prior", [0.0, 1.0])
def test_fit_matches_scipy_maximum_likelihood(prior):
    rng = random.Random(3)
    models = ["m0", "m1", "m2", "m3"]
    true = {"m0": 0.0, "m1": 0.7, "m2": -0.4, "m3": 1.5}
    games = []
    for _ in range(300):
        a, b = rng.sample(models, 2)
        p = 1 / (1 + math.exp(true[b] - true[a]))
        u = rng.random()
        games.append(Game(a, b, 0.5 if abs(u - p) < 0.05 else float(u < p)))
    ours = to_rating(fit_strengths(win_matrix(games, models), prior))
    assert np.allclose(ours, scipy_ratings(games, models, prior), atol=1e-3)


def test_a_model_that_always_wins_gets_a_finite_rating_with_the_prior():
    games = [Game("best", "worst", 1)] * 5
    rows = leaderboard(games, rounds=0)
    assert [r.model for r in rows] == ["best", "worst"]
    assert all(math.isfinite(r.rating) for r in rows)
    assert rows[0].rating == pytest.approx(scipy_ratings(games, ["best", "worst"], 1.0)[0], abs=1e-3)


def test_round_robin_ratings_follow_win_counts():
    # Every pair meets equally often: then Bradley-Terry ranks models exactly by their total wins.
    rng = random.Random(7)
    models = [f"m{i}" for i in range(5)]
    games = [Game(a, b, rng.choice([0.0, 1.0, 1.0, 0.5])) for a in models for b in models if a < b for _ in range(6)]
    rows = leaderboard(games, prior=0, rounds=0)
    score = {r.model: r.wins + r.ties / 2 for r in rows}
    ordered = [score[r.model] for r in rows]
    assert ordered == sorted(ordered, reverse=True) and len(set(ordered)) > 2


def test_bootstrap_intervals_are_seeded_and_shrink_with_more_votes():
    games = [Game("A", "B", 1)] * 6 + [Game("A", "B", 0)] * 3 + [Game("B", "C", 1)] * 5 + [Game("C", "A", 0.5)] * 2
    one = leaderboard(games, rounds=100, seed=1)
    assert one == leaderboard(games, rounds=100, seed=1)
    for r in one:
        assert r.ci_low <= r.rating <= r.ci_high and r.ci_low < r.ci_high
    many = {r.model: r for r in leaderboard(games * 10, rounds=100, seed=1)}
    for r in one:
        assert many[r.model].ci_high - many[r.model].ci_low < r.ci_high - r.ci_low


def test_export_keeps_decisive_distinct_votes_only():
    vote = {"mode": "completion", "prompt": "P", "system": None, "answer_a": "x", "answer_b": "y"}
    assert to_pair({**vote, "winner": "b"}) == {"prompt": "P", "chosen": "y", "rejected": "x"}
    assert to_pair({**vote, "winner": "tie"}) is None and to_pair({**vote, "winner": "both_bad"}) is None
    assert to_pair({**vote, "winner": "a", "answer_b": "x"}) is None
    chat = to_pair({**vote, "mode": "chat", "system": "S", "winner": "a"})
    assert chat == {
        "prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "P"}],
        "chosen": [{"role": "assistant", "content": "x"}],
        "rejected": [{"role": "assistant", "content": "y"}],
    }
