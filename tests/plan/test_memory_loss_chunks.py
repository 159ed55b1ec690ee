"""`kiln plan`'s activation memory follows the model's loss options: chunked cross-entropy keeps one chunk of
fp32 logits instead of every token's, and a padded vocabulary's logits are as wide as its rows."""

from __future__ import annotations

from dataclasses import replace

from kiln.model.presets import preset
from kiln.plan.memory import ModelCounts, device_memory

KW = dict(precision="bf16", zero=0, tp=1, dp=1, micro_batch=4, seq_len=1024, checkpointing=True)


def activations(**model) -> float:
    return device_memory(ModelCounts.of(replace(preset("gpt2"), **model)), **KW).activations


def test_chunked_loss_removes_all_but_one_chunk_of_logits():
    tokens = KW["micro_batch"] * KW["seq_len"]
    saved = activations() - activations(loss_chunk_tokens=512)
    assert saved == 4 * 50257 * (tokens - 512)  # fp32 logits of the tokens outside the one live chunk
    assert activations(loss_chunk_tokens=10**6) == activations()  # a chunk past the batch is the whole batch


def test_padded_vocabulary_logits_are_as_wide_as_its_rows():
    tokens = KW["micro_batch"] * KW["seq_len"]
    assert activations(vocab_multiple_of=128) - activations() == 4 * (50304 - 50257) * tokens
