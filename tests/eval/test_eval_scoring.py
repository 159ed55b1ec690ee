"""The shared-context scorer against the plain way: one full forward per (context, continuation)."""

from __future__ import annotations

import random
import warnings

import pytest
import torch

from kiln.eval.scoring import score_pairs, truncate


@torch.no_grad()
def _reference(model, ctx, cont):
    """The harness's computation: (ctx + cont)[-(block+1):][:-1] through the model, the last len(cont) logits."""
    block = model.config.block_size
    ctx, cont, _ = truncate(ctx, cont, block)
    logits = model(torch.tensor([(ctx + cont)[:-1]]), all_logits=True)[0][0, -len(cont) :]
    logp = torch.log_softmax(logits, -1)
    target = torch.tensor(cont)
    return float(logp[range(len(cont)), target].sum()), bool((logp.argmax(-1) == target).all())


@pytest.mark.parametrize("pos_encoding", ["learned", "rope"])
def test_shared_context_scores_equal_one_forward_per_pair(make_model, pos_encoding) -> None:
    model = make_model(pos_encoding=pos_encoding)  # float64, block_size 32
    rng = random.Random(0)
    pairs = []
    for _ in range(12):  # questions with 1-4 options and contexts of every length, some past the block
        ctx = [rng.randrange(64) for _ in range(rng.randint(1, 40))]
        pairs += [(ctx, [rng.randrange(64) for _ in range(rng.randint(1, 12))]) for _ in range(rng.randint(1, 4))]
    for _ in range(6):  # options sharing leading tokens (scored once per context), one option the prefix itself
        ctx = [rng.randrange(64) for _ in range(rng.randint(1, 30))]
        stem = [rng.randrange(64) for _ in range(rng.randint(1, 6))]
        pairs += [(ctx, stem + [rng.randrange(64) for _ in range(rng.randint(1, 5))]) for _ in range(3)]
        pairs.append((ctx, stem[:]))
    pairs.append(([5] * 3, [7] * 40))  # a continuation longer than the block
    # Greedy pairs (the argmax continuation) make `greedy` True somewhere, so both values are checked.
    for ctx in ([1, 2, 3], [9] * 31):
        cont = []
        for _ in range(3):
            logits = model(torch.tensor([(ctx + cont)[-32:]]))[0]
            cont.append(int(logits[0, -1].argmax()))
        pairs.append((ctx, cont))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = score_pairs(model, pairs, batch_tokens=64)  # small batches: many batch boundaries
    assert any("truncated from the left" in str(w.message) for w in caught)
    for (ctx, cont), s in zip(pairs, got, strict=True):
        ll, greedy = _reference(model, ctx, cont)
        assert s.loglik == pytest.approx(ll, abs=1e-9) and s.greedy == greedy
    assert any(s.greedy for s in got)


def test_batch_size_does_not_change_scores(make_model) -> None:
    model = make_model()
    rng = random.Random(1)
    pairs = [([rng.randrange(64) for _ in range(rng.randint(1, 20))], [rng.randrange(64)] * rng.randint(1, 5))
             for _ in range(20)]  # fmt: skip
    one = [s.loglik for s in score_pairs(model, pairs, batch_tokens=1)]
    many = [s.loglik for s in score_pairs(model, pairs, batch_tokens=10_000)]
    assert one == pytest.approx(many, abs=1e-9)


def test_an_empty_continuation_is_an_error(make_model) -> None:
    with pytest.raises(ValueError, match="empty continuation"):
        score_pairs(make_model(), [([1, 2], [])])


def test_shared_prefix_leaves_every_option_a_token_of_its_own() -> None:
    from kiln.eval.scoring import shared_prefix

    assert shared_prefix([[1, 2, 3], [1, 2, 4]]) == 2
    assert shared_prefix([[1, 2], [1, 2, 3]]) == 1  # the shorter option keeps its last token
    assert shared_prefix([[1, 2, 3]]) == 2 and shared_prefix([[1], [2]]) == 0
