"""Fixed-shape decoding (`static_decode=True`, the CUDA-graph-ready step) run eagerly on the CPU: it picks the
same tokens as the ordinary dynamic-cache decode for every position encoding and attention variant, for batch
sizes that fill a bucket and ones that need filler rows, for left-padded batches, past the context (the slide),
and when sampling; and its logits match the ordinary step's."""

from __future__ import annotations

import copy

import pytest
import torch

from kiln.generate import SamplingParams, generate_batch
from kiln.generate.static_decoder import bucket, release, static_decoder
from kiln.model import GPT, GPTConfig

VOCAB = 50
SHAPE = dict(vocab_size=VOCAB, block_size=48, n_layer=2, n_head=4, n_embd=32)
ROPE = dict(pos_encoding="rope", norm="rmsnorm", activation="swiglu", bias=False)
VARIANTS = {
    "gpt2-learned": {},
    "rope-gqa": {**ROPE, "n_kv_head": 2},
    "alibi": dict(pos_encoding="alibi"),
    "sinusoidal-window": dict(pos_encoding="sinusoidal", attention_window=6),
    "moe-padded-vocab": {**ROPE, "n_experts": 3, "moe_top_k": 2, "mlp_hidden": 32, "vocab_multiple_of": 64},
}
# Lengths 1..13: left padding in every batch of more than one prompt.
PROMPTS = [[(7 * i + 3 * j) % VOCAB for j in range(1 + (5 * i) % 13)] for i in range(6)]


def model_of(**kw) -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SHAPE, **kw)).eval()
    with torch.no_grad():  # wider weights than the init, so greedy choices are decided by clear margins
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(4.0)
    return model


def tokens(model: GPT, prompts, params: SamplingParams, static: bool) -> list[list[int]]:
    return [c.tokens for c in generate_batch(model, prompts, params, static_decode=static)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_static_decode_picks_the_dynamic_decode_tokens(variant):
    model = model_of(**VARIANTS[variant])
    greedy = SamplingParams(temperature=0.0, max_new_tokens=10)
    for n in (1, 3, 6):  # a full bucket of 1; 3 in 4 rows and 6 in 8 (filler rows), left-padded
        prompts = PROMPTS[:n]
        assert tokens(model, prompts, greedy, True) == tokens(model, prompts, greedy, False), n


def test_static_decode_slides_past_the_context_like_the_dynamic_decode():
    model = model_of(**ROPE)
    params = SamplingParams(temperature=0.0, max_new_tokens=SHAPE["block_size"])  # 13 + 48 > 48: slides
    assert tokens(model, PROMPTS[2:5], params, True) == tokens(model, PROMPTS[2:5], params, False)


def test_static_decode_samples_the_same_tokens_with_the_same_logprobs():
    model = model_of()
    params = SamplingParams(temperature=0.9, top_p=0.9, max_new_tokens=12, seed=5, logprobs=2)
    static = generate_batch(model, PROMPTS[:3], params, static_decode=True)
    dynamic = generate_batch(model, PROMPTS[:3], params)
    assert [c.tokens for c in static] == [c.tokens for c in dynamic]
    for a, b in zip(static, dynamic, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_static_step_logits_equal_the_ordinary_step():
    model = model_of(**ROPE, n_kv_head=1)
    prompts = PROMPTS[1:5]  # 4 rows: exactly a bucket, no filler
    dec = static_decoder(model, len(prompts))
    width = max(map(len, prompts))
    ids = torch.zeros(4, width, dtype=torch.long)
    valid = torch.zeros(4, width, dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        valid[i, width - len(p) :] = True
    ref = model.new_cache(4, SHAPE["block_size"])
    with torch.inference_mode():
        for cache in (ref, dec.cache):
            cache.reset()
            model(ids, cache=cache, valid=valid)
        dec.step.sync()
        step = torch.tensor([[1], [2], [3], [4]])
        for _ in range(3):
            want = model(step, cache=ref)[0][:, -1]
            got = dec.decode(step)
            assert torch.allclose(got, want, atol=1e-5)
            assert dec.cache.length == ref.length and int(dec.step.slot) == ref.length
            step = want.argmax(-1, keepdim=True)
    release(model)
    assert "_kiln_static_decoders" not in model.__dict__


def test_buckets_and_pooling():
    assert [bucket(n) for n in (1, 2, 3, 5, 8, 9, 33, 64, 65, 130)] == [1, 2, 4, 8, 8, 16, 64, 64, 128, 192]
    with pytest.raises(ValueError, match="batch size"):
        bucket(0)
    model = model_of()
    assert static_decoder(model, 3) is static_decoder(model, 4)  # one cache (and graph) per bucket
    assert static_decoder(model, 5) is not static_decoder(model, 4)
    copied = copy.deepcopy(model)  # (a CUDA graph in the pool could not be copied: a copy starts afresh)
    assert not copied.__dict__["_kiln_static_decoders"] and model.__dict__["_kiln_static_decoders"]
    with pytest.raises(ValueError, match="use_cache"):
        generate_batch(model, PROMPTS[:1], SamplingParams(max_new_tokens=2), use_cache=False, static_decode=True)
