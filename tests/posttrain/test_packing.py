"""A packed batch gives every trained token the loss it gets when its conversation runs alone; overlong
conversations are truncated or dropped and counted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import conversations
from kiln.model.checkpoint import load_checkpoint
from kiln.posttrain.packing import IGNORE, pack
from kiln.posttrain.render import render_for_training


def per_token_losses(model, x, y, seg=None) -> torch.Tensor:
    with torch.no_grad():
        logits, _ = model(x, segments=seg, all_logits=True)
    keep = y != IGNORE
    return F.cross_entropy(logits[keep].double(), y[keep], reduction="none")


def test_packed_rows_give_each_conversation_its_own_losses(base_model):
    model, tok, _ = load_checkpoint(base_model)
    model = model.double()
    examples = [(*render_for_training(tok, c), f"c{i}") for i, c in enumerate(conversations(12, seed=4))]
    packed, stats = pack(examples, 192, packing=True)
    assert stats.rows < len(examples) and stats.fill > 0.6
    alone, _ = pack(examples, 192, packing=False)
    assert len(alone) == len(examples)
    t = torch.from_numpy
    got = per_token_losses(model, t(packed.x), t(packed.y), t(packed.seg))
    want = torch.cat([per_token_losses(model, t(alone.x[i : i + 1]), t(alone.y[i : i + 1])) for i in range(len(alone))])
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-9)


def test_overlong_conversations_are_truncated_or_dropped_and_counted():
    ids = list(range(50))
    trained = [False] * 10 + [True] * 40
    short = (list(range(8)), [False] * 4 + [True] * 4, "short")
    w, stats = pack([(ids, trained, "long"), short], 20, overlong="truncate")
    assert stats.truncated == 1 and stats.rows == 2 and w.x.shape == (2, 20)
    assert np.array_equal(w.x[0], np.arange(20)) and (w.y[0][:9] == IGNORE).all() and (w.y[0][9:] >= 0).all()
    _, stats = pack([(ids, trained, "long"), short], 20, overlong="drop")
    assert stats.dropped_too_long == 1 and stats.rows == 1 and "long" in stats.dropped_sources[0]
    # Truncation that leaves no assistant token drops the conversation, with the reason.
    _, stats = pack([(ids, [False] * 30 + [True] * 20, "late")], 20)
    assert stats.rows == 0 and stats.dropped_no_target == 1


@pytest.mark.parametrize("packing", [True, False])
def test_padding_never_carries_loss(packing):
    examples = [(list(range(n)), [False] + [True] * (n - 1), str(n)) for n in (5, 9, 3)]
    w, _ = pack(examples, 16, packing=packing)
    assert ((w.seg == -1) <= (w.y == IGNORE)).all()


def test_weights_travel_with_their_targets():
    examples = [(list(range(6)), [0.0, 0.0, 1.0, 4.0, 1.0, 1.0], "a"), (list(range(10, 15)), [0, 1, 1, 1, 2.5], "b")]
    for packing in (True, False):
        w, _ = pack(examples, 16, packing=packing)
        trained = w.y != IGNORE
        # Each target keeps the weight of the id it predicts; untrained targets and padding weigh 0.
        assert sorted(w.w[trained].tolist()) == sorted([0.0, 1.0, 4.0, 1.0, 1.0, 1, 1, 1, 2.5][1:])
        assert (w.w[~trained] == 0).all()
        assert w.w[w.y == 3].tolist() == [4.0] and w.w[w.y == 14].tolist() == [2.5]
