"""Tests for attention masking in kiln.model: causality, sliding windows, prefix-LM, left padding and the KV cache."""

from __future__ import annotations

import pytest
import torch

from helpers import POS_ENCODINGS, all_logits, close

# --------------------------------------------------------------------------------------------- masks


@pytest.mark.parametrize("window", [None, 3])
@pytest.mark.parametrize("pos", POS_ENCODINGS)
def test_causality(make_model, rand_ids, pos, window):
    model = make_model(pos_encoding=pos, attention_window=window, init_std=0.1)
    idx = rand_ids(2, 12)
    t = 6
    changed = idx.clone()
    changed[:, t] = (idx[:, t] + 1) % 64
    a, b = all_logits(model, idx), all_logits(model, changed)
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
    a, b = all_logits(model, idx)[0], all_logits(model, changed)[0]
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
    a, b = all_logits(model, idx)[0], all_logits(model, changed)[0]
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

    base = all_logits(model, idx, prefix_len=p)[0]
    # Position 0 sees the last prefix token ...
    inside = all_logits(model, change(p - 1), prefix_len=p)[0]
    assert not torch.allclose(base[0], inside[0], atol=1e-9)
    # ... which a causal model would not.
    assert torch.allclose(all_logits(model, idx)[0, 0], all_logits(model, change(p - 1))[0, 0], atol=1e-12, rtol=0)
    # Tokens at or after the prefix end stay invisible to the prefix and to earlier suffix positions.
    for i in (p, p + 2):
        after = all_logits(model, change(i), prefix_len=p)[0]
        assert torch.allclose(base[:i], after[:i], atol=1e-12, rtol=0), f"token {i} leaked backwards"
        assert not torch.allclose(base[i], after[i], atol=1e-9)


def test_prefix_lm_with_left_padding_and_with_a_cache(make_model, rand_ids):
    model = make_model(pos_encoding="rope", init_std=0.1)
    a, b = rand_ids(7, seed=3), rand_ids(10, seed=4)
    ids = torch.stack([torch.cat([torch.zeros(3, dtype=torch.long), a]), b])
    valid = torch.ones(2, 10, dtype=torch.bool)
    valid[0, :3] = False
    padded = all_logits(model, ids, valid=valid, prefix_len=4)
    assert close(padded[0, 3:], all_logits(model, a[None], prefix_len=4)[0])
    assert close(padded[1], all_logits(model, b[None], prefix_len=4)[0])
    # Prefill the whole prefix (and a bit) bidirectionally, then decode causally through the cache.
    full = all_logits(model, b[None], prefix_len=4)
    cache = model.new_cache(1, 10)
    with torch.no_grad():
        parts = [model(b[None, :6], cache=cache, prefix_len=4, all_logits=True)[0]]
        parts += [model(b[None, t : t + 1], cache=cache)[0] for t in range(6, 10)]
    assert close(torch.cat(parts, dim=1), full)


def test_prefix_len_per_row(make_model, rand_ids):
    model = make_model(pos_encoding="rope", init_std=0.1)
    idx = rand_ids(2, 8)
    per_row = all_logits(model, idx, prefix_len=torch.tensor([4, 1]))
    assert close(per_row[0], all_logits(model, idx[:1], prefix_len=4)[0])
    # prefix_len 1 is plain causal attention.
    assert close(per_row[1], all_logits(model, idx[1:])[0])


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
    padded = all_logits(model, ids, valid=valid)
    alone_a, alone_b = all_logits(model, a[None])[0], all_logits(model, b[None])[0]
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
    full = all_logits(model, idx)
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
    full = all_logits(model, idx)
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
    assert close(got[0], all_logits(model, torch.cat([a, more[0]])[None])[0])
    assert close(got[1, 4:], all_logits(model, torch.cat([b, more[1]])[None])[0])


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
    assert close(again, all_logits(model, idx[:, :4])[:, -1:])


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


def test_learned_positions_refuse_to_step_past_block_size() -> None:
    """A learned position table has block_size rows: a cached step at position block_size is a clear error,
    with and without left padding (positions then count only the real tokens)."""
    from kiln.model import GPT, preset

    torch.manual_seed(0)
    model = GPT(preset("tiny", n_layer=1, n_embd=16, n_head=2, block_size=8, vocab_size=11)).eval()
    with torch.no_grad():
        cache = model.new_cache(1, 12)
        model(torch.randint(0, 11, (1, 8)), cache=cache)
        with pytest.raises(ValueError, match="position 8 is past block_size 8"):
            model(torch.randint(0, 11, (1, 1)), cache=cache)
        padded = model.new_cache(1, 12)
        model(torch.randint(0, 11, (1, 3)), cache=padded, valid=torch.tensor([[False, True, True]]))
        for _ in range(6):  # real positions 2..7
            model(torch.randint(0, 11, (1, 1)), cache=padded)
        with pytest.raises(ValueError, match="position 8 is past block_size 8"):
            model(torch.randint(0, 11, (1, 1)), cache=padded)
