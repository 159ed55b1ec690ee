"""A bf16 model on the CPU prefills at one of a few widths (`kiln.model.gpt.prefill_width`): each new prompt
length would otherwise build new oneDNN kernels for every layer (docs/benchmarks.md). The padding is on the left,
masked, and only where the cache keeps the room the new tokens need, so the tokens are the unpadded ones."""

from __future__ import annotations

import pytest
import torch

from helpers import widths_seen
from kiln.generate import SamplingParams, generate_batch
from kiln.model.gpt import bucket_length

VOCAB, CTX = 97, 64


def _prompts(lengths: list[int]) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize(
    "overrides", [{"pos_encoding": "learned"}, {"pos_encoding": "rope", "n_kv_head": 2}, {"pos_encoding": "alibi"}]
)
@pytest.mark.parametrize(
    ("lengths", "new", "width"),
    [
        ([5, 13, 9], 20, 16),  # padded to bucket_length(13)
        ([13], 40, 16),  # 16 + 40 still fits the context
        ([20], 40, 20),  # 32 + 40 would not: unpadded, so decoding slides where it would have
        ([40, 3], 30, 40),  # past the room the cache leaves: unpadded, and it slides
    ],
)
def test_bucketed_prefill_gives_the_unpadded_tokens(make_model, looks_bf16, overrides, lengths, new, width):
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=CTX, **overrides)
    prompts = _prompts(lengths)
    assert bucket_length(max(lengths)) == 16 or width == max(lengths)
    for params in (
        SamplingParams(temperature=0, max_new_tokens=new),
        SamplingParams(temperature=1.0, top_k=20, max_new_tokens=new, seed=3, logprobs=2),
    ):
        out = {}
        for bucket in (True, False):
            model.bucket_shapes = bucket
            seen, out[bucket] = widths_seen(model, generate_batch, model, prompts, params)
            assert seen[0] == (width if bucket else max(lengths))  # the prefill
        for padded, plain in zip(out[True], out[False], strict=True):
            assert padded.tokens == plain.tokens
            torch.testing.assert_close(torch.tensor(padded.logprobs), torch.tensor(plain.logprobs))


def test_fp32_prefills_at_the_prompts_width(make_model):
    model = make_model(dtype=torch.float32, vocab_size=VOCAB, block_size=CTX)
    seen, _ = widths_seen(model, generate_batch, model, _prompts([5, 13]), SamplingParams(max_new_tokens=2))
    assert seen[0] == 13  # fp32 (MKL) builds nothing per shape: no padding
