"""Tests for kiln.model: shapes, loss, every architecture option, masks, padding, KV cache, presets, init,
validation and the packed CPU inference path."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from kiln.model import GPT, GPTConfig, build, cpu_fast, preset, preset_names
from kiln.model.mlp import MoE

POS_ENCODINGS = ["learned", "sinusoidal", "rope", "alibi", "none"]


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-9) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=0)


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


# --------------------------------------------------------------------------------------------- masks


def _logits(model, idx, **kw):
    with torch.no_grad():
        return model(idx, all_logits=True, **kw)[0]


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_causality(make_model, rand_ids, pos, window):
    model = make_model(pos_encoding=pos, attention_window=window, init_std=0.1)
    idx = rand_ids(2, 12)
    t = 6
    changed = idx.clone()
    changed[:, t] = (idx[:, t] + 1) % 64
    a, b = _logits(model, idx), _logits(model, changed)
    assert torch.equal(a[:, :t], b[:, :t]) or close(a[:, :t], b[:, :t], atol=1e-12)
    assert not torch.allclose(a[:, t], b[:, t], atol=1e-6)
    if pos != "none" or window is not None:
        assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :], atol=1e-6)


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi", "none"])
def test_sliding_window_reach_with_one_layer(make_model, rand_ids, pos):
    w, j = 4, 3
    model = make_model(pos_encoding=pos, attention_window=w, n_layer=1, init_std=0.1)
    idx = rand_ids(1, 16)
    changed = idx.clone()
    changed[0, j] = (idx[0, j] + 7) % 64
    a, b = _logits(model, idx)[0], _logits(model, changed)[0]
    for t in range(16):
        same = torch.allclose(a[t], b[t], atol=1e-12, rtol=0)
        if t < j or t >= j + w:  # before the token, or t - j >= w: out of reach
            assert same, f"position {t} depends on token {j} (window {w})"
        else:
            assert not same, f"position {t} should see token {j} (window {w})"


def test_sliding_window_reach_grows_with_depth(make_model, rand_ids):
    """Control for the test above: with two layers position j + w sees token j through position j + w - 1."""
    w, j = 4, 3
    model = make_model(attention_window=w, n_layer=2, init_std=0.1)
    idx = rand_ids(1, 16)
    changed = idx.clone()
    changed[0, j] = (idx[0, j] + 7) % 64
    a, b = _logits(model, idx)[0], _logits(model, changed)[0]
    assert not torch.allclose(a[j + w], b[j + w], atol=1e-9)
    assert torch.allclose(a[j + 2 * w - 1 :], b[j + 2 * w - 1 :], atol=1e-12, rtol=0)


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_prefix_lm_is_bidirectional_inside_the_prefix_only(make_model, rand_ids, pos):
    p = 5
    model = make_model(pos_encoding=pos, init_std=0.1)
    idx = rand_ids(1, 10)

    def change(i):
        out = idx.clone()
        out[0, i] = (idx[0, i] + 11) % 64
        return out

    base = _logits(model, idx, prefix_len=p)[0]
    # Position 0 sees the last prefix token ...
    inside = _logits(model, change(p - 1), prefix_len=p)[0]
    assert not torch.allclose(base[0], inside[0], atol=1e-9)
    # ... which a causal model would not.
    assert torch.allclose(_logits(model, idx)[0, 0], _logits(model, change(p - 1))[0, 0], atol=1e-12, rtol=0)
    # Tokens at or after the prefix end stay invisible to the prefix and to earlier suffix positions.
    for i in (p, p + 2):
        after = _logits(model, change(i), prefix_len=p)[0]
        assert torch.allclose(base[:i], after[:i], atol=1e-12, rtol=0), f"token {i} leaked backwards"
        assert not torch.allclose(base[i], after[i], atol=1e-9)


def test_prefix_lm_with_left_padding_and_with_a_cache(make_model, rand_ids):
    model = make_model(pos_encoding="rope", init_std=0.1)
    a, b = rand_ids(7, seed=3), rand_ids(10, seed=4)
    ids = torch.stack([torch.cat([torch.zeros(3, dtype=torch.long), a]), b])
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[0, :3] = False
    padded = _logits(model, ids, valid=valid, prefix_len=4)
    assert close(padded[0, 3:], _logits(model, a[None], prefix_len=4)[0])
    assert close(padded[1], _logits(model, b[None], prefix_len=4)[0])
    # Prefill the whole prefix (and a bit) bidirectionally, then decode causally through the cache.
    full = _logits(model, b[None], prefix_len=4)
    cache = model.new_cache(1, 10)
    with torch.no_grad():
        parts = [model(b[None, :6], cache=cache, prefix_len=4, all_logits=True)[0]]
        parts += [model(b[None, t : t + 1], cache=cache)[0] for t in range(6, 10)]
    assert close(torch.cat(parts, dim=1), full)


def test_prefix_len_per_row(make_model, rand_ids):
    model = make_model(pos_encoding="rope", init_std=0.1)
    idx = rand_ids(2, 8)
    per_row = _logits(model, idx, prefix_len=torch.tensor([4, 1]))
    assert close(per_row[0], _logits(model, idx[:1], prefix_len=4)[0])
    # prefix_len 1 is plain causal attention.
    assert close(per_row[1], _logits(model, idx[1:])[0])


# --------------------------------------------------------------------------------------------- left padding


@pytest.mark.parametrize(
    "overrides",
    [
        dict(pos_encoding="learned"),
        dict(pos_encoding="rope"),
        dict(pos_encoding="alibi"),
        dict(pos_encoding="sinusoidal"),
        dict(pos_encoding="rope", attention_window=3, n_kv_head=2),
    ],
    ids=["learned", "rope", "alibi", "sinusoidal", "rope-window-gqa"],
)
def test_left_padding_matches_unpadded_rows(make_model, rand_ids, overrides):
    model = make_model(init_std=0.1, **overrides)
    a, b = rand_ids(7, seed=3), rand_ids(10, seed=4)
    pads = rand_ids(3, seed=5)  # arbitrary pad ids: they must not leak
    ids = torch.stack([torch.cat([pads, a]), b])
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[0, :3] = False
    padded = _logits(model, ids, valid=valid)
    alone_a, alone_b = _logits(model, a[None])[0], _logits(model, b[None])[0]
    assert close(padded[0, 3:], alone_a)
    assert close(padded[1], alone_b)
    last, _ = model(ids, valid=valid)
    assert close(last[0, 0], alone_a[-1]) and close(last[1, 0], alone_b[-1])


# --------------------------------------------------------------------------------------------- KV cache

CACHE_CASES = {
    **{pos: dict(pos_encoding=pos) for pos in POS_ENCODINGS},
    "gqa": dict(pos_encoding="rope", n_kv_head=2),
    "mqa": dict(pos_encoding="alibi", n_kv_head=1),
    "window": dict(pos_encoding="rope", attention_window=4),
    "window-learned": dict(pos_encoding="learned", attention_window=3, n_kv_head=2),
    "moe": dict(pos_encoding="rope", n_experts=3, moe_top_k=2),
}


@pytest.mark.parametrize("prefill", [5, 1])
@pytest.mark.parametrize("overrides", list(CACHE_CASES.values()), ids=list(CACHE_CASES))
def test_kv_cache_steps_match_full_forward(make_model, rand_ids, overrides, prefill):
    model = make_model(init_std=0.1, **overrides)
    idx = rand_ids(2, 14)
    full = _logits(model, idx)
    cache = model.new_cache(2, 14)
    with torch.no_grad():
        parts = [model(idx[:, :prefill], cache=cache, all_logits=True)[0]]
        for t in range(prefill, 14):
            step, _ = model(idx[:, t : t + 1], cache=cache)
            parts.append(step)
    assert cache.length == 14
    assert close(torch.cat(parts, dim=1), full)


@pytest.mark.parametrize("overrides", list(CACHE_CASES.values()), ids=list(CACHE_CASES))
def test_kv_cache_chunked_prefill_matches_full_forward(make_model, rand_ids, overrides):
    model = make_model(init_std=0.1, **overrides)
    idx = rand_ids(2, 14)
    full = _logits(model, idx)
    cache = model.new_cache(2)
    parts = []
    with torch.no_grad():
        for s in range(0, 14, 3):  # 3, 3, 3, 3, 2
            parts.append(model(idx[:, s : s + 3], cache=cache, all_logits=True)[0])
    assert close(torch.cat(parts, dim=1), full)


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi", "sinusoidal"])
def test_kv_cache_with_left_padding_matches_each_row_alone(make_model, rand_ids, pos):
    model = make_model(pos_encoding=pos, init_std=0.1, attention_window=5 if pos == "rope" else None)
    a, b = rand_ids(9, seed=3), rand_ids(5, seed=4)
    ids = torch.stack([a, torch.cat([torch.zeros(4, dtype=torch.long), b])])
    valid = torch.ones(2, 9, dtype=torch.bool)
    valid[1, :4] = False
    more = rand_ids(2, 6, seed=6)
    cache = model.new_cache(2, 15)
    with torch.no_grad():
        parts = [model(ids, cache=cache, valid=valid, all_logits=True)[0]]
        for t in range(6):
            parts.append(model(more[:, t : t + 1], cache=cache)[0])
    got = torch.cat(parts, dim=1)
    assert close(got[0], _logits(model, torch.cat([a, more[0]])[None])[0])
    assert close(got[1, 4:], _logits(model, torch.cat([b, more[1]])[None])[0])


def test_kv_cache_overflow_and_reset(make_model, rand_ids):
    model = make_model()
    idx = rand_ids(1, 6)
    cache = model.new_cache(1, 4)
    with torch.no_grad():
        model(idx[:, :4], cache=cache)
        with pytest.raises(ValueError, match="overflow"):
            model(idx[:, 4:5], cache=cache)
        cache.reset()
        assert cache.length == 0
        again, _ = model(idx[:, :4], cache=cache)
    assert close(again, _logits(model, idx[:, :4])[:, -1:])


def test_learned_positions_past_block_size_are_rejected_with_a_cache(make_model, rand_ids):
    model = make_model(block_size=8, pos_encoding="learned")
    cache = model.new_cache(1, 12)
    with torch.no_grad():
        model(rand_ids(1, 8), cache=cache)
        with pytest.raises(ValueError, match="block_size"):
            model(rand_ids(1, 1), cache=cache)
    # RoPE has no table: the same cache keeps going past block_size.
    rope = make_model(block_size=8, pos_encoding="rope")
    cache = rope.new_cache(1, 12)
    with torch.no_grad():
        rope(rand_ids(1, 8), cache=cache)
        assert torch.isfinite(rope(rand_ids(1, 1), cache=cache)[0]).all()


def test_gqa_cache_stores_only_kv_heads(make_model):
    model = make_model(n_kv_head=1, pos_encoding="rope")
    mha = make_model(pos_encoding="rope")
    assert model.new_cache(2, 8).k.shape == (2, 2, 1, 8, 8)
    assert model.new_cache(2, 8).nbytes() * 4 == mha.new_cache(2, 8).nbytes()
    assert model.new_cache(1).max_len == 32


# --------------------------------------------------------------------------------------------- presets & accounting


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt2", 124_439_808),
        ("gpt2-medium", 354_823_168),
        ("llama3-8b", 8_030_261_248),
        ("llama3-70b", 70_553_706_496),
        ("llama3-405b", 405_853_388_800),
    ],
)
def test_preset_parameter_counts(name, expected):
    model = build(name, device="meta")
    assert model.lm_head.weight.device.type == "meta"
    assert model.num_params() == expected


def test_gpt3_is_175b_within_one_percent():
    assert build("gpt3-175b", device="meta").num_params() == pytest.approx(175e9, rel=0.01)


def test_llama_small_shape():
    cfg = preset("llama-small")
    assert (cfg.pos_encoding, cfg.norm, cfg.activation) == ("rope", "rmsnorm", "swiglu")
    assert cfg.tie_embeddings is False and cfg.bias is False
    assert 1 < cfg.kv_heads < cfg.n_head
    model = build("llama-small", device="meta")
    assert model.lm_head.weight is not model.wte.weight
    assert isinstance(model.norm_f, torch.nn.RMSNorm)
    assert model.blocks[0].attn.qkv.bias is None


def test_preset_overrides_and_unknown_name():
    assert preset("tiny", vocab_size=65).vocab_size == 65
    with pytest.raises(ValueError, match="n_head"):
        preset("tiny", n_head=3)
    with pytest.raises(ValueError, match="unknown model preset") as e:
        preset("gpt5")
    for name in preset_names():
        assert name in str(e.value)
    assert {"gpt2", "llama3-405b", "tiny"} <= set(preset_names())


def test_405b_builds_on_meta_quickly_and_sizes_training_memory():
    start = time.perf_counter()
    model = build("llama3-405b", device="meta")
    assert time.perf_counter() - start < 5.0
    n = model.num_params()
    report = model.memory_report()
    assert report["training_total"] > 4e12
    # bf16 weights + bf16 grads + two fp32 AdamW moments + fp32 master copy = 16 bytes per parameter.
    assert report["training_total"] == 16 * n
    assert report["weights"] == 2 * n
    cfg = model.config
    assert report["kv_cache"] == 2 * cfg.n_layer * 8 * (16384 // 128) * 8192 * 2
    fp32 = model.memory_report(dtype=torch.float32, batch_size=2, seq_len=100)
    assert fp32["fp32_master"] == 0 and fp32["training_total"] == 16 * n
    assert fp32["kv_cache"] == 2 * 126 * 8 * 128 * 100 * 2 * 4


def test_gpt2_flops_per_token():
    model = build("gpt2", device="meta")
    n = 124_439_808 - 1024 * 768  # tied head counts, the position table does not
    assert model.flops_per_token() == 6 * n + 12 * 12 * 12 * 64 * 1024
    assert model.flops_per_token(seq_len=256) == 6 * n + 12 * 12 * 12 * 64 * 256
    assert model.num_params(non_embedding=True) == 124_439_808 - 1024 * 768 - 50257 * 768


def test_untied_head_counts_as_a_matmul(make_model):
    tied, untied = make_model(), make_model(tie_embeddings=False)
    assert untied.num_params() == tied.num_params() + 64 * 32
    assert untied.active_matmul_params() == tied.active_matmul_params()
    assert untied.num_params(non_embedding=True) == tied.num_params(non_embedding=True) + 64 * 32


# --------------------------------------------------------------------------------------------- init


def test_init_scales_residual_projections():
    torch.manual_seed(0)
    n_layer = 4
    model = GPT(GPTConfig(vocab_size=512, block_size=64, n_layer=n_layer, n_head=4, n_embd=256))
    resid = 0.02 / math.sqrt(2 * n_layer)
    for blk in model.blocks:
        assert blk.attn.proj.weight.std().item() == pytest.approx(resid, rel=0.03)
        assert blk.mlp.proj.weight.std().item() == pytest.approx(resid, rel=0.03)
        assert blk.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.03)
        assert blk.mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.03)
        assert blk.attn.qkv.weight.mean().abs().item() < 1e-3
        assert torch.count_nonzero(blk.attn.qkv.bias) == 0 and torch.count_nonzero(blk.mlp.proj.bias) == 0
        assert torch.equal(blk.norm1.weight, torch.ones(256))
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert model.wpe.weight.std().item() == pytest.approx(0.02, rel=0.03)


def test_tied_weights_share_storage(make_model):
    model = make_model()
    assert model.lm_head.weight is model.wte.weight
    with torch.no_grad():
        model.wte.weight[3, 5] = 123.0
    assert model.lm_head.weight[3, 5].item() == 123.0
    untied = make_model(tie_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.wte.weight.data_ptr()


# --------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(n_embd=30, n_head=4), "n_embd"),
        (dict(n_head=4, n_kv_head=3), "n_kv_head"),
        (dict(n_head=4, n_kv_head=5), "n_kv_head"),
        (dict(n_embd=36, n_head=4, pos_encoding="rope"), "rope"),
        (dict(n_experts=2, moe_top_k=3), "moe_top_k"),
        (dict(dropout=1.0), "dropout"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(attention_window=0), "attention_window"),
        (dict(norm_eps=0.0), "norm_eps"),
    ],
)
def test_config_validation_names_the_field(overrides, field):
    cfg = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=4, n_embd=32)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    with pytest.raises(ValueError, match=field):
        cfg.validate()
    with pytest.raises(ValueError, match=field):
        GPT(cfg)


def test_valid_config_validates_to_itself():
    cfg = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=4, n_embd=32, n_kv_head=2)
    assert cfg.validate() is cfg
    assert cfg.hidden_dim == 128
    assert GPTConfig(n_embd=768, activation="swiglu").hidden_dim == 2048
    # Llama 7B: int(8/3 * 4096) = 10922 rounded up to a multiple of 256.
    assert GPTConfig(n_embd=4096, activation="swiglu", mlp_multiple_of=256).hidden_dim == 11008
    assert GPTConfig(n_embd=768, activation="swiglu", mlp_hidden=100).hidden_dim == 100


# --------------------------------------------------------------------------------------------- packed linears

needs_onednn = pytest.mark.skipif(not cpu_fast.available(), reason="oneDNN packed linear not available here")


@needs_onednn
@pytest.mark.parametrize("batch", [1, 3])
def test_packed_linears_match_plain_forward_and_repack_on_change(make_model, rand_ids, batch):
    model = make_model(dtype=torch.float32, init_std=0.1, pos_encoding="rope", activation="swiglu")
    idx = rand_ids(batch, 10)
    with torch.inference_mode():
        plain = model(idx, all_logits=True)[0]
        plain_last = model(idx)[0]
        with cpu_fast.packed_linears(model):
            packed = model(idx, all_logits=True)[0]
            packed_last = model(idx)[0]
    assert "_kiln_packed" in model.blocks[0].attn.qkv.__dict__, "the packed path was not used"
    assert "forward" not in model.blocks[0].attn.qkv.__dict__, "forward not restored on exit"
    assert torch.allclose(packed, plain, atol=1e-4, rtol=0)
    assert torch.allclose(packed_last, plain_last, atol=1e-4, rtol=0)

    with torch.no_grad():
        model.blocks[0].attn.qkv.weight.mul_(-2.0)
        model.blocks[1].mlp.proj.weight.add_(0.05)
        model.wte.weight.mul_(1.5)  # the tied LM head
    with torch.inference_mode():
        plain2 = model(idx, all_logits=True)[0]
        with cpu_fast.packed_linears(model):
            packed2 = model(idx, all_logits=True)[0]
    assert not torch.allclose(plain2, plain, atol=1e-3)
    assert torch.allclose(packed2, plain2, atol=1e-4, rtol=0)


@needs_onednn
def test_packed_linears_is_a_no_op_with_gradients_or_float64(make_model, rand_ids):
    model = make_model(dtype=torch.float32)
    with cpu_fast.packed_linears(model):
        model(rand_ids(1, 4))
    assert "_kiln_packed" not in model.lm_head.__dict__
    model64 = make_model(dtype=torch.float64)
    with torch.inference_mode(), cpu_fast.packed_linears(model64):
        model64(rand_ids(1, 4))
    assert "_kiln_packed" not in model64.lm_head.__dict__


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
    assert close(_logits(model, idx), ref, atol=1e-5)


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
    assert close(_logits(model, idx), ref, atol=1e-5)


def test_alibi_slopes_for_non_power_of_two_heads():
    from kiln.model.positions import alibi_slopes

    assert alibi_slopes(4).tolist() == [2**-2, 2**-4, 2**-6, 2**-8]
    # Press et al.: the 4 slopes of n=4, then every other slope of n=8 for the 2 remaining heads.
    assert alibi_slopes(6).tolist() == [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]
