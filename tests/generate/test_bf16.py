"""bfloat16 decoding (`dtype=bfloat16`): the same engine, half the bytes per step, and the fp32 tokens kept
wherever bf16's rounding cannot decide the argmax."""

from __future__ import annotations

import copy

import pytest
import torch

from kiln.generate import SamplingParams, generate
from kiln.model.inference_dtype import resolve


def test_bf16_decoding_keeps_the_fp32_tokens_until_a_near_tie(make_model, rand_ids):
    model = make_model(dtype=torch.float32, init_std=0.2, pos_encoding="rope", n_kv_head=2)
    prompt = rand_ids(8, seed=3).tolist()
    n = 24
    fp32 = generate(model, prompt, SamplingParams(temperature=0.0, max_new_tokens=n))
    bf16_model = copy.deepcopy(model).to(torch.bfloat16)
    bf16 = generate(bf16_model, prompt, SamplingParams(temperature=0.0, max_new_tokens=n))
    assert next(bf16_model.parameters()).dtype == torch.bfloat16

    # Teacher-forced along the fp32 path: how far bf16's logits stray, and where the fp32 top two are close
    # enough for that to flip the argmax.
    seq = torch.tensor([prompt + fp32.tokens])
    with torch.inference_mode():
        lf = model(seq, all_logits=True)[0][0, len(prompt) - 1 : -1]
        lb = bf16_model(seq, all_logits=True)[0][0, len(prompt) - 1 : -1].float()
    err = (lf - lb).abs().max(dim=-1).values
    assert float(err.max()) <= 0.02 * float(lf.abs().max()), "bf16 logits further from fp32 than bf16's precision"
    top2 = lf.topk(2, dim=-1).values
    decidable = (top2[:, 0] - top2[:, 1]) > 2 * err
    first_tie = int((~decidable).nonzero()[0]) if not bool(decidable.all()) else n
    assert first_tie > 0, "the test model should decide at least its first token"
    assert bf16.tokens[:first_tie] == fp32.tokens[:first_tie]


def test_dtype_choices():
    assert resolve("float32") == torch.float32
    assert resolve("bfloat16") == torch.bfloat16
    assert resolve("auto") in (torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="dtype: must be one of"):
        resolve("fp8")


@pytest.mark.parametrize("fp32_faster", [True, False])  # what cpu_fast's one-off timing found on this CPU
@pytest.mark.parametrize("pos_encoding", ["rope", "alibi"])  # ALiBi: an additive float mask, lifted with the query
def test_a_bf16_model_on_a_cpu_attends_over_an_fp32_cache_where_that_is_faster(
    make_model, rand_ids, pos_encoding, fp32_faster, monkeypatch
):
    """bf16 weights, fp32 keys and values where the CPU attends faster in fp32 (`gpt.cache_dtype`), else bf16 ones:
    either way cached decoding of a padded batch stays within a few bf16 roundings of the fp32 model's logits, and
    fp32 models keep their dtype."""
    from kiln.model import cpu_fast
    from kiln.model.gpt import cache_dtype

    monkeypatch.setattr(cpu_fast, "fp32_attention_faster", lambda: fp32_faster)
    model = make_model(dtype=torch.float32, init_std=0.2, pos_encoding=pos_encoding, n_kv_head=2)
    bf16_model = copy.deepcopy(model).to(torch.bfloat16)
    assert cache_dtype(next(model.parameters())) == torch.float32
    assert bf16_model.new_cache(2, 16).k.dtype == (torch.float32 if fp32_faster else torch.bfloat16)
    assert cache_dtype(torch.empty(0, dtype=torch.bfloat16, device="meta")) == torch.bfloat16  # not a CPU: own dtype

    ids = torch.stack([rand_ids(10, seed=1), rand_ids(10, seed=2)])
    valid = torch.ones_like(ids, dtype=torch.bool)
    valid[1, :4] = False  # left padding: the explicit mask path
    with torch.inference_mode():
        cache = bf16_model.new_cache(2, 12)
        bf16_model(ids[:, :8], cache=cache, valid=valid[:, :8])
        stepped = [bf16_model(ids[:, i : i + 1], cache=cache)[0][:, -1].float() for i in (8, 9)]
        want = [model(ids[:, : i + 1], valid=valid[:, : i + 1])[0][:, -1] for i in (8, 9)]
    scale = max(float(w.abs().max()) for w in want)
    for got, ref in zip(stepped, want, strict=True):
        assert got.dtype == torch.float32 and torch.isfinite(got).all()
        assert float((got - ref).abs().max()) <= 0.03 * scale, "bf16 + fp32 attention strays past bf16's precision"


def test_the_attention_dtype_is_measured_once():
    from kiln.model import cpu_fast

    assert cpu_fast.fp32_attention_faster() in (True, False)
    assert cpu_fast.fp32_attention_faster.cache_info().currsize == 1
