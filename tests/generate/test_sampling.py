import math

import pytest
import torch

from kiln.generate.sampling import (
    SamplingParams,
    apply_min_p,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    draw,
    greedy_pick,
    make_generators,
    process_logits,
    sample_next,
    top_logprobs,
)

NEG_INF = float("-inf")


def rand_logits(b, v, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, v, generator=g, dtype=torch.float64) * 2).to(dtype)


def kept(x):
    return torch.isfinite(x)


# --------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -1.0}, "temperature must be >= 0 (0 = greedy), got -1.0"),
        ({"temperature": math.nan}, "temperature must be >= 0 (0 = greedy), got nan"),
        ({"temperature": math.inf}, "temperature must be >= 0 (0 = greedy), got inf"),
        ({"top_p": 1.5}, "top_p must be in (0, 1], got 1.5"),
        ({"top_p": 0.0}, "top_p must be in (0, 1], got 0.0"),
        ({"top_p": math.nan}, "top_p must be in (0, 1], got nan"),
        ({"top_k": -3}, "top_k must be >= 0 (0 = off), got -3"),
        ({"top_k": 2.5}, "top_k must be an integer >= 0 (0 = off), got 2.5"),
        ({"min_p": 2}, "min_p must be in [0, 1], got 2"),
        ({"min_p": -0.1}, "min_p must be in [0, 1], got -0.1"),
        ({"min_p": math.nan}, "min_p must be in [0, 1], got nan"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1, got 0"),
        ({"repetition_penalty": 0}, "repetition_penalty must be > 0, got 0"),
        ({"repetition_penalty": -1.2}, "repetition_penalty must be > 0, got -1.2"),
        ({"repetition_penalty": math.inf}, "repetition_penalty must be > 0, got inf"),
        ({"logprobs": 21}, "logprobs must be in [0, 20], got 21"),
        ({"logprobs": -1}, "logprobs must be in [0, 20], got -1"),
        ({"stop": ["ok", ""]}, "stop strings must be non-empty"),
        ({"stop_token_ids": [3, -1]}, "stop_token_ids must be integers >= 0, got -1"),
        ({"seed": 1.5}, "seed must be an integer or None, got 1.5"),
    ],
)
def test_validation_errors(kwargs, message):
    with pytest.raises(ValueError) as info:
        SamplingParams(**kwargs).validate()
    assert message in str(info.value)


def test_validate_returns_self_and_converts_lists():
    p = SamplingParams(stop=["a", "b"], stop_token_ids=[1, 2], temperature=0, top_p=1, min_p=1, logprobs=20)
    assert p.validate() is p
    assert p.stop == ("a", "b") and p.stop_token_ids == (1, 2)
    assert SamplingParams(stop="</s>").stop == ("</s>",)
    SamplingParams().validate()


# ------------------------------------------------------------------------------------------------ filters


def test_top_k_one_equals_greedy():
    logits = rand_logits(16, 100, seed=1)
    greedy = sample_next(logits, SamplingParams(temperature=0))
    assert torch.equal(greedy, logits.argmax(-1))
    for t in (0.5, 1.0, 3.0):
        assert torch.equal(sample_next(logits, SamplingParams(temperature=t, top_k=1)), greedy)
    # Ties: still exactly the argmax (first index).
    tied = torch.tensor([[1.0, 3.0, 3.0, 0.0]])
    assert sample_next(tied, SamplingParams(top_k=1)).item() == 1


def test_top_k_keeps_exactly_k():
    logits = rand_logits(8, 50, seed=2)
    for k in (1, 5, 49):
        out = apply_top_k(logits, k)
        assert (kept(out).sum(-1) == k).all()
        # The kept ones are the k largest, unchanged.
        top = logits.topk(k, dim=-1).indices
        assert kept(out).gather(1, top).all()
        assert torch.equal(out.gather(1, top), logits.gather(1, top))
    assert torch.equal(apply_top_k(logits, 0), logits)
    assert torch.equal(apply_top_k(logits, 50), logits)
    assert torch.equal(apply_top_k(logits, 500), logits)


def brute_force_top_p(row, p):
    """Set of ids of the smallest set of most probable tokens whose mass >= p."""
    probs = torch.softmax(row.double(), -1).tolist()
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    chosen, mass = [], 0.0
    for i in order:
        chosen.append(i)
        mass += probs[i]
        if mass >= p:
            break
    return set(chosen)


@pytest.mark.parametrize("p", [1e-6, 0.1, 0.5, 0.9, 0.99, 0.999])
def test_top_p_matches_brute_force(p):
    logits = rand_logits(20, 64, seed=3, dtype=torch.float64)
    out = apply_top_p(logits, p)
    for b in range(logits.shape[0]):
        got = set(torch.nonzero(kept(out[b])).flatten().tolist())
        assert got == brute_force_top_p(logits[b], p)
        assert torch.equal(out[b][kept(out[b])], logits[b][kept(out[b])])
    if p == 1e-6:
        assert (kept(out).sum(-1) == 1).all()
        assert torch.equal(out.argmax(-1), logits.argmax(-1))


def test_top_p_exact_boundary():
    # probs (0.5, 0.25, 0.25): mass 0.5 is reached by the top token alone, 0.75 needs two.
    x = torch.tensor([[2.0, 1.0, 1.0]]).log()
    assert kept(apply_top_p(x, 0.5)).tolist() == [[True, False, False]]
    assert kept(apply_top_p(x, 0.75)).tolist() == [[True, True, False]]
    assert kept(apply_top_p(x, 0.76)).tolist() == [[True, True, True]]


def test_top_p_one_is_identity_and_always_keeps_top():
    logits = rand_logits(4, 30, seed=4)
    assert torch.equal(apply_top_p(logits, 1.0), logits)
    peaked = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    assert kept(apply_top_p(peaked, 0.5)).tolist() == [[True, False, False, False]]


def test_min_p_threshold():
    logits = rand_logits(10, 40, seed=5)
    for min_p in (0.01, 0.1, 0.5):
        out = apply_min_p(logits, min_p)
        probs = torch.softmax(logits.double(), -1)
        expected = probs >= min_p * probs.max(-1, keepdim=True).values
        assert torch.equal(kept(out), expected)
    assert torch.equal(apply_min_p(logits, 0.0), logits)
    assert (kept(apply_min_p(logits, 1.0)).sum(-1) == 1).all()
    # Explicit: probs (0.5, 0.25, 0.125, 0.125) with min_p 0.3 keeps p >= 0.15.
    x = torch.tensor([[0.5, 0.25, 0.125, 0.125]]).log()
    assert kept(apply_min_p(x, 0.3)).tolist() == [[True, True, False, False]]


def test_repetition_penalty_signs_and_ragged_context():
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0, 0.0], [2.0, -2.0, 1.0, -1.0, 0.0]])
    out = apply_repetition_penalty(logits, [[0, 1, 1], [3]], 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, -1.0, 0.0], [2.0, -2.0, 1.0, -2.0, 0.0]]
    assert logits[0, 0] == 2.0  # input untouched
    # A padded (B, L) tensor (negative = padding) gives the same; an empty row changes nothing.
    padded = torch.tensor([[0, 1, 1], [3, -1, -1]])
    assert torch.equal(apply_repetition_penalty(logits, padded, 2.0), out)
    assert torch.equal(apply_repetition_penalty(logits, [[], [0, 2]], 1.0), logits)
    assert apply_repetition_penalty(logits, [[], [0, 2]], 2.0)[0].tolist() == logits[0].tolist()
    # penalty < 1 encourages repetition, again sign-aware.
    enc = apply_repetition_penalty(logits[:1], [[0, 1]], 0.5)
    assert enc.tolist() == [[4.0, -1.0, 1.0, -1.0, 0.0]]
    # Penalised tokens always become (weakly) less likely for penalty > 1.
    big = rand_logits(3, 30, seed=6)
    ctx = [[1, 2, 3], [], list(range(0, 30, 2))]
    pen = apply_repetition_penalty(big, ctx, 1.3)
    assert (pen <= big).all()


def test_process_logits_applies_penalty_before_argmax():
    logits = torch.tensor([[3.0, 2.9, -1.0]])
    p = SamplingParams(temperature=0, repetition_penalty=1.5)
    assert sample_next(logits, p, context=[[0]]).item() == 1
    assert sample_next(logits, p).item() == 0  # no context, no penalty


def test_top_p_applied_after_top_k():
    # probs ~ (0.4, 0.3, 0.2, 0.1). top_k=2 leaves (0.57, 0.43); top_p=0.5 of that keeps one token.
    # The other order (top_p first keeps 2, then top_k 2) would keep two.
    logits = torch.tensor([[0.4, 0.3, 0.2, 0.1]]).log()
    params = SamplingParams(temperature=1.0, top_k=2, top_p=0.5)
    out = process_logits(logits, params)
    expected = apply_top_p(apply_top_k(logits, 2), 0.5)
    assert torch.equal(kept(out), kept(expected))
    assert kept(out).tolist() == [[True, False, False, False]]
    assert kept(apply_top_k(apply_top_p(logits, 0.5), 2)).sum() == 2
    # On random logits too.
    logits = rand_logits(16, 64, seed=7)
    params = SamplingParams(temperature=0.7, top_k=10, top_p=0.6)
    out = process_logits(logits, params)
    expected = apply_top_p(apply_top_k(apply_temperature(logits, 0.7), 10), 0.6)
    assert torch.equal(out, expected)


def test_process_logits_casts_to_float32():
    logits = rand_logits(2, 10, seed=8).to(torch.bfloat16)
    assert process_logits(logits, SamplingParams(top_p=0.9)).dtype == torch.float32
    assert process_logits(logits, SamplingParams(temperature=0)).dtype == torch.float32


# ----------------------------------------------------------------------------------------------- sampling


CHI2_CRIT_DF7_P001 = 24.32  # chi-square critical value, 7 degrees of freedom, p = 0.001


def chi2(counts, probs, n):
    expected = probs * n
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_empirical_distribution_matches_softmax_over_temperature(temperature):
    logits = torch.tensor([[1.0, 0.5, 0.0, -0.5, 2.0, -1.0, 0.3, 1.2]])
    n = 20_000
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        draws = sample_next(logits.expand(n, -1), SamplingParams(temperature=temperature))
    assert draws.shape == (n,) and draws.dtype == torch.long
    counts = torch.bincount(draws, minlength=8).double()
    target = torch.softmax(logits[0].double() / temperature, -1)
    assert chi2(counts, target, n) < CHI2_CRIT_DF7_P001
    assert (counts / n - target).abs().max() < 0.02
    # The test has power: the T = 1 distribution is clearly rejected.
    assert chi2(counts, torch.softmax(logits[0].double(), -1), n) > 10 * CHI2_CRIT_DF7_P001


def test_draw_picks_each_token_with_its_probability_per_row_generator():
    """The inverse-CDF draw that replaced per-row torch.multinomial: frequencies match the probabilities (a
    chi-square test with power against a nearby distribution), tokens of probability 0 (here between and after
    nonzero ones) are never drawn, a 1e-3 token is at its rate, and every row draws from its own generator alone."""
    probs = torch.tensor([0.4, 0.25, 0.0, 0.15, 0.1, 0.05, 0.03, 0.019, 0.001, 0.0])
    n = 40_000
    gens = make_generators(99, n)
    draws = draw(probs.expand(n, -1).contiguous(), gens)
    counts = torch.bincount(draws, minlength=10).double()
    zero = probs == 0
    assert counts[zero].sum() == 0
    support = counts[~zero]
    assert chi2(support, probs[~zero].double(), n) < CHI2_CRIT_DF7_P001
    nearby = torch.tensor([0.38, 0.27, 0.15, 0.1, 0.05, 0.03, 0.019, 0.001], dtype=torch.float64)
    assert chi2(support, nearby, n) > CHI2_CRIT_DF7_P001
    assert 15 <= counts[8] <= 70  # expected 40
    (g,) = make_generators(99 + 5, 1)
    assert draw(probs[None], [g]).item() == draws[5].item()


def test_draw_refuses_nan_probabilities():
    with pytest.raises(RuntimeError, match="NaN or inf"):
        draw(torch.tensor([[float("nan"), 0.5]]))


def test_temperature_zero_is_argmax():
    logits = rand_logits(32, 77, seed=9)
    out = sample_next(logits, SamplingParams(temperature=0, top_k=5, top_p=0.1))
    assert torch.equal(out, logits.argmax(-1))
    assert torch.equal(process_logits(logits, SamplingParams(temperature=0, top_k=5)), logits)


def test_same_seed_same_draws():
    logits = rand_logits(4, 50, seed=10)
    params = SamplingParams(temperature=1.5, top_k=30, top_p=0.95, seed=42)

    def draw(seed):
        gens = make_generators(seed, 4)
        return torch.stack([sample_next(logits, params, generators=gens) for _ in range(20)])

    a, b = draw(42), draw(42)
    assert torch.equal(a, b)
    assert not torch.equal(a, draw(43))
    assert make_generators(None, 4) is None


def test_per_row_generators_match_rows_drawn_alone():
    logits = rand_logits(3, 40, seed=11)
    params = SamplingParams(temperature=1.0, min_p=0.01, repetition_penalty=1.2)
    context = [[1, 2], [5], [7, 8, 9]]
    gens = make_generators(7, 3)
    batched = torch.stack([sample_next(logits, params, context, gens) for _ in range(25)])
    for i in range(3):
        (g,) = make_generators(7 + i, 1)
        alone = torch.stack([sample_next(logits[i : i + 1], params, [context[i]], [g]) for _ in range(25)])
        assert torch.equal(batched[:, i : i + 1], alone)
    with pytest.raises(ValueError, match="generators"):
        sample_next(logits, params, generators=make_generators(0, 2))


def test_filtered_tokens_are_never_sampled():
    logits = rand_logits(1, 20, seed=12).expand(2000, -1)
    params = SamplingParams(temperature=1.0, top_k=3)
    allowed = set(logits[0].topk(3).indices.tolist())
    draws = sample_next(logits, params, generators=None)
    assert set(draws.tolist()) <= allowed


def test_top_logprobs_sorted_and_raw():
    logits = rand_logits(5, 60, seed=13)
    values, ids = top_logprobs(logits, 7)
    assert values.shape == (5, 7) and ids.shape == (5, 7) and ids.dtype == torch.long
    assert (values[:, :-1] >= values[:, 1:]).all()
    ref = torch.log_softmax(logits, -1)
    assert torch.allclose(values, ref.gather(1, ids))
    assert torch.equal(ids, ref.topk(7, -1).indices)
    assert top_logprobs(logits, 0)[0].shape == (5, 0)
    assert top_logprobs(logits, 100)[0].shape == (5, 60)


def test_apply_temperature_rejects_zero():
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(torch.zeros(1, 3), 0.0)


def test_greedy_pick_is_argmax_and_takes_the_first_of_tied_maxima():
    """Greedy decoding's pick equals torch.argmax (the first maximal index) on rows full of ties, over a
    vocabulary-sized row where the reduction is split across vector lanes and threads."""
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        x = torch.randint(0, 4, (8, 50257), generator=g).float()  # thousands of tied maxima per row
        assert torch.equal(greedy_pick(x), torch.argmax(x, dim=-1))
    y = torch.zeros(2, 50257)
    y[0, [40000, 7, 123]] = 5.0
    y[1, [50256, 3]] = 1.0
    assert greedy_pick(y).tolist() == [7, 3]
