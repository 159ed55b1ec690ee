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
