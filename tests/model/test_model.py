"""Tests for kiln.model: shapes, loss, every architecture option trains, MoE, and a hand-written reference forward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import POS_ENCODINGS, all_logits, close
from kiln.model import GPT, GPTConfig
from kiln.model.mlp import MoE

# --------------------------------------------------------------------------------------------- forward & loss


def test_forward_shapes_with_and_without_targets(make_model, rand_ids):
    model = make_model()
    idx, targets = rand_ids(2, 8), rand_ids(2, 8, seed=2)
    logits, loss = model(idx, targets)
    assert logits.shape == (2, 8, 64)
    assert loss is not None and loss.dim() == 0 and torch.isfinite(loss)

    last, no_loss = model(idx)
    assert no_loss is None
    assert last.shape == (2, 1, 64)
    full, _ = model(idx, all_logits=True)
    assert full.shape == (2, 8, 64)
    # The three paths agree on what they share.
    assert close(full, logits)
    assert close(last[:, 0], logits[:, -1])


def test_loss_is_cross_entropy_of_the_logits_with_ignore_index(make_model, rand_ids):
    model = make_model(dtype=torch.float32, init_std=0.2)
    idx, targets = rand_ids(3, 10), rand_ids(3, 10, seed=5)
    targets[0, :4] = -1
    targets[2, -1] = -1
    logits, loss = model(idx, targets)
    lp = torch.log_softmax(logits.double(), dim=-1)
    keep = targets != -1
    nll = -lp[keep].gather(1, targets[keep][:, None])[:, 0]
    assert loss.item() == pytest.approx(nll.mean().item(), abs=1e-5)
    # Non-trivial: the loss is far from ln(V) with this wide init, so a constant would not pass.
    assert abs(loss.item() - math.log(64)) > 0.05


def test_loss_at_small_init_is_close_to_ln_vocab(make_model, rand_ids):
    model = make_model(dtype=torch.float32, vocab_size=97, init_std=0.02)
    _, loss = model(rand_ids(4, 16, vocab=97), rand_ids(4, 16, vocab=97, seed=3))
    assert loss.item() == pytest.approx(math.log(97), abs=0.05)


def test_sequence_longer_than_block_size_is_rejected(make_model, rand_ids):
    model = make_model(block_size=8)
    with pytest.raises(ValueError, match="block_size"):
        model(rand_ids(1, 9))


# --------------------------------------------------------------------------------------------- every option trains

TRAIN_CASES = {
    "learned-layernorm-gelu-pre": dict(pos_encoding="learned", norm="layernorm", activation="gelu"),
    "sinusoidal-rmsnorm-relu-pre": dict(pos_encoding="sinusoidal", norm="rmsnorm", activation="relu"),
    "rope-rmsnorm-swiglu-pre": dict(pos_encoding="rope", norm="rmsnorm", activation="swiglu"),
    "alibi-layernorm-swiglu-post": dict(pos_encoding="alibi", activation="swiglu", norm_position="post"),
    "none-rmsnorm-gelu-post": dict(pos_encoding="none", norm="rmsnorm", norm_position="post"),
    "rope-layernorm-relu-post": dict(pos_encoding="rope", activation="relu", norm_position="post"),
    "gqa": dict(pos_encoding="rope", n_kv_head=2),
    "mqa": dict(pos_encoding="rope", n_kv_head=1),
    "no-bias": dict(bias=False),
    "untied": dict(tie_embeddings=False),
    "window": dict(attention_window=4),
    "dropout": dict(dropout=0.1),
    "moe": dict(n_experts=4, moe_top_k=2, pos_encoding="rope", norm="rmsnorm", activation="swiglu"),
}


@pytest.mark.parametrize("overrides", list(TRAIN_CASES.values()), ids=list(TRAIN_CASES))
def test_every_option_builds_and_learns_a_fixed_batch(make_model, rand_ids, overrides):
    model = make_model(dtype=torch.float32, train=True, block_size=12, n_layer=1, **overrides)
    idx = rand_ids(2, 12, seed=7)
    targets = torch.roll(idx, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for step in range(15):
        _, loss = model(idx, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == 0:
            # Every parameter gets a finite gradient (MoE: experts no token was routed to may get none).
            for name, p in model.named_parameters():
                if p.grad is None:
                    assert "experts" in name, f"{name} got no gradient"
                    continue
                assert torch.isfinite(p.grad).all(), name
                assert p.grad.abs().sum() > 0 or "experts" in name, f"{name} has an all-zero gradient"
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.7 * losses[0], losses


def test_dropout_differs_in_train_mode_and_is_deterministic_in_eval(make_model, rand_ids):
    model = make_model(dtype=torch.float32, dropout=0.3, init_std=0.1)
    idx = rand_ids(2, 12)
    model.train()
    a, _ = model(idx, all_logits=True)
    b, _ = model(idx, all_logits=True)
    assert not torch.allclose(a, b)
    model.eval()
    c, _ = model(idx, all_logits=True)
    d, _ = model(idx, all_logits=True)
    assert torch.equal(c, d)
    # Eval with dropout configured equals the same weights with dropout 0.
    plain = make_model(dtype=torch.float32, dropout=0.0, init_std=0.1)
    plain.load_state_dict(model.state_dict())
    e, _ = plain(idx, all_logits=True)
    assert torch.allclose(c, e, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------- mixture of experts


def test_moe_aux_loss_is_finite_about_one_and_added_to_the_loss(make_model, rand_ids):
    coef = 0.5
    model = make_model(n_experts=4, moe_top_k=2, moe_aux_loss_coef=coef, init_std=0.1)
    idx, targets = rand_ids(2, 12), rand_ids(2, 12, seed=9)
    assert model.last_aux_loss is None
    logits, loss = model(idx, targets)
    aux = model.last_aux_loss
    assert aux is not None and aux.dim() == 0 and torch.isfinite(aux)
    assert 0.9 < aux.item() < 2.0  # >= 1 in theory for top-k balanced usage, near 1 at random init
    ce = F.cross_entropy(logits.reshape(-1, 64), targets.reshape(-1))
    assert loss.item() == pytest.approx(ce.item() + coef * aux.item(), abs=1e-6)

    # A zero router gives uniform probabilities: aux is exactly 1 whatever the tie-breaking picks.
    with torch.no_grad():
        for blk in model.blocks:
            blk.mlp.router.weight.zero_()
    model(idx, targets)
    assert model.last_aux_loss.item() == pytest.approx(1.0, abs=1e-12)


def test_moe_layer_matches_a_per_token_reference():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16, n_experts=4, moe_top_k=2)
    moe = MoE(cfg).double()
    for p in moe.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    out = moe(x)
    ref = torch.zeros_like(x)
    for b in range(2):
        for t in range(5):
            probs = torch.softmax(moe.router(x[b, t]), dim=-1)
            w, e = probs.topk(2)
            w = w / w.sum()
            for wi, ei in zip(w, e, strict=True):
                ref[b, t] += wi * moe.experts[int(ei)](x[b, t])
    assert close(out, ref, atol=1e-6)  # the router softmax runs in float32 by design
    assert moe.aux_loss.item() >= 1.0 - 1e-9  # n * sum(f * P) >= 1 when each token picks its own top-k

    # Collapsed routing: every token sends both slots to experts 0 and 1 -> aux = 4 * (0.5 * 0.5) * 2 = 2.
    with torch.no_grad():
        moe.router.weight[:2] = 5.0
        moe.router.weight[2:] = -5.0
    moe(x.abs() + 0.1)
    assert moe.aux_loss.item() == pytest.approx(2.0, abs=1e-6)


def test_moe_counts_only_active_experts(make_model):
    dense = make_model(n_experts=0)
    moe = make_model(n_experts=4, moe_top_k=1)
    per_expert = sum(p.numel() for p in moe.blocks[0].mlp.experts[0].parameters())
    router = 4 * 32
    assert moe.num_params() == dense.num_params() + 2 * (3 * per_expert + router)
    assert moe.active_matmul_params() == dense.active_matmul_params() + 2 * router


# --------------------------------------------------------------------------------------------- reference forward


def _reference_forward(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """A one-layer forward written out by hand: position encodings, GQA head sharing, causal /
    sliding-window mask and ALiBi biases computed independently of kiln's helpers."""
    cfg = model.config
    (blk,) = model.blocks
    b, t = idx.shape
    h, kvh, hd, c = cfg.n_head, cfg.kv_heads, cfg.head_dim, cfg.n_embd
    pos = torch.arange(t, dtype=torch.float64)
    x = model.wte(idx)
    if cfg.pos_encoding == "learned":
        x = x + model.wpe.weight[:t]
    elif cfg.pos_encoding == "sinusoidal":
        pe = torch.zeros(t, c, dtype=torch.float64)
        for i in range(c // 2):
            pe[:, 2 * i] = torch.sin(pos / 10000 ** (2 * i / c))
            pe[:, 2 * i + 1] = torch.cos(pos / 10000 ** (2 * i / c))
        x = x + pe
    q, k, v = blk.attn.qkv(blk.norm1(x) if cfg.norm_position == "pre" else x).split(
        [h * hd, kvh * hd, kvh * hd], dim=-1
    )
    q, k, v = (z.view(b, t, -1, hd).transpose(1, 2) for z in (q, k, v))
    if cfg.pos_encoding == "rope":
        half = hd // 2
        ang = pos[:, None] * cfg.rope_theta ** (-torch.arange(half, dtype=torch.float64) * 2 / hd)
        cos, sin = ang.cos(), ang.sin()

        def rot(z):
            z1, z2 = z[..., :half], z[..., half:]
            return torch.cat([z1 * cos - z2 * sin, z2 * cos + z1 * sin], dim=-1)

        q, k = rot(q), rot(k)
    group = h // kvh
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    if cfg.pos_encoding == "alibi":
        slopes = torch.tensor([2 ** (-8 * (n + 1) / h) for n in range(h)], dtype=torch.float64)
        scores = scores - slopes[:, None, None] * (i - j)
    allowed = j <= i
    if cfg.attention_window is not None:
        allowed = allowed & (i - j < cfg.attention_window)
    scores = scores.masked_fill(~allowed, float("-inf"))
    y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, h * hd)

    def mlp(z):
        hidden = blk.mlp.fc(z)
        if cfg.activation == "swiglu":
            gate, up = hidden.chunk(2, dim=-1)
            return blk.mlp.proj(gate * torch.sigmoid(gate) * up)
        act = torch.relu(hidden) if cfg.activation == "relu" else F.gelu(hidden, approximate="tanh")
        return blk.mlp.proj(act)

    if cfg.norm_position == "pre":
        x = x + blk.attn.proj(y)
        x = x + mlp(blk.norm2(x))
        return model.lm_head(model.norm_f(x))
    x = blk.norm1(x + blk.attn.proj(y))
    x = blk.norm2(x + mlp(x))
    return model.lm_head(x)  # post-norm: no final norm


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_forward_matches_a_hand_written_reference(make_model, rand_ids, pos, window):
    model = make_model(pos_encoding=pos, attention_window=window, n_layer=1, n_kv_head=2, init_std=0.3)
    idx = rand_ids(2, 12)
    with torch.no_grad():
        ref = _reference_forward(model, idx)
    # kiln computes angles, sin/cos tables and ALiBi biases in float32 by design (so bf16 keeps exact angles).
    assert close(all_logits(model, idx), ref, atol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(norm_position="post", activation="relu", pos_encoding="learned"),
        dict(norm_position="post", activation="swiglu", pos_encoding="alibi", norm="rmsnorm"),
        dict(activation="swiglu", pos_encoding="rope", rope_theta=500.0, norm="rmsnorm", bias=False),
        dict(activation="relu", pos_encoding="sinusoidal", n_kv_head=1, attention_window=4),
    ],
    ids=["post-relu-learned", "post-swiglu-alibi", "swiglu-rope-theta", "relu-sinusoidal-mqa-window"],
)
def test_other_architectures_match_the_reference(make_model, rand_ids, overrides):
    model = make_model(n_layer=1, init_std=0.3, **overrides)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # non-trivial gains and biases
                p.add_(0.2 * torch.randn_like(p))
        idx = rand_ids(2, 12)
        ref = _reference_forward(model, idx)
    assert close(all_logits(model, idx), ref, atol=1e-5)


def test_alibi_slopes_for_non_power_of_two_heads():
    from kiln.model.positions import alibi_slopes

    assert alibi_slopes(4).tolist() == [2**-2, 2**-4, 2**-6, 2**-8]
    # Press et al.: the 4 slopes of n=4, then every other slope of n=8 for the 2 remaining heads.
    assert alibi_slopes(6).tolist() == [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]
