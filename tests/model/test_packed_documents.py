"""`segments`: several documents packed into one row compute exactly what each computes alone (attention stays
inside a document, positions restart), for every position encoding and with sliding windows."""

from __future__ import annotations

import pytest
import torch

from kiln.model.gpt import segment_positions


def test_positions_restart_at_each_segment():
    seg = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2], [5, 5, 5, 5, 5, 5, 5, 5, 5]])
    assert segment_positions(seg).tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3], list(range(9))]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"pos_encoding": "rope", "norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 2},
        {"pos_encoding": "alibi"},
        {"pos_encoding": "sinusoidal", "attention_window": 3},
        {"pos_encoding": "rope", "n_experts": 2, "moe_top_k": 1},
    ],
)
def test_a_packed_row_equals_its_documents_run_alone(make_model, overrides):
    model = make_model(**overrides)
    g = torch.Generator().manual_seed(0)
    lengths = [5, 1, 9, 7]
    docs = [torch.randint(0, 64, (n,), generator=g) for n in lengths]
    row = torch.cat(docs)[None]
    seg = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
    with torch.no_grad():
        packed, _ = model(row, segments=seg, all_logits=True)
        alone = torch.cat([model(d[None], all_logits=True)[0] for d in docs], dim=1)
    assert (packed - alone).abs().max().item() < 1e-9


def test_packed_training_loss_ignores_masked_targets(make_model):
    model = make_model()
    x = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    y = x.roll(-1, dims=1)
    y[:, ::3] = -1
    seg = torch.tensor([[0] * 6 + [1] * 6, [0] * 12])
    logits, loss = model(x, y, segments=seg)
    ref = torch.nn.functional.cross_entropy(logits.float().reshape(-1, 64), y.reshape(-1), ignore_index=-1)
    assert torch.allclose(loss, ref)
