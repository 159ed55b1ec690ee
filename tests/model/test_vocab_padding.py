"""Vocabulary padding (`vocab_multiple_of`): a padded model computes exactly what the unpadded model with the
same real rows computes — logits, losses, gradients of the real rows, generated tokens — and its checkpoints
record the padding and load back; the padding rows are filled with large values so any leak would show."""

from __future__ import annotations

import pytest
import torch

from kiln.generate import SamplingParams, generate_batch
from kiln.model import GPT, GPTConfig
from kiln.model.checkpoint import load_checkpoint, save_checkpoint
from kiln.model.vocab_padding import strip_vocab_padding

VOCAB = 61  # a prime: padding to 64 adds 3 rows
SHAPE = dict(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=2, n_embd=32)


def pair(**kw) -> tuple[GPT, GPT]:
    """(unpadded, padded) models with the same real weights; the padded one's extra rows are loud noise."""
    torch.manual_seed(0)
    plain = GPT(GPTConfig(**SHAPE, **kw)).eval()
    padded = GPT(GPTConfig(**SHAPE, vocab_multiple_of=64, **kw)).eval()
    state = plain.state_dict()
    with torch.no_grad():
        for name, p in padded.state_dict().items():
            if p.shape == state[name].shape:
                p.copy_(state[name])
            else:
                p[:VOCAB] = state[name]
                p[VOCAB:] = 5.0 * torch.randn_like(p[VOCAB:])  # would dominate any softmax it leaked into
    return plain, padded


def test_padded_rows_round_up_to_the_multiple():
    cfg = GPTConfig(**SHAPE, vocab_multiple_of=64)
    assert cfg.padded_vocab_size == 64
    assert GPTConfig(**SHAPE).padded_vocab_size == VOCAB
    assert GPTConfig(**{**SHAPE, "vocab_size": 128}, vocab_multiple_of=64).padded_vocab_size == 128
    model = GPT(cfg)
    assert model.wte.weight.shape[0] == model.lm_head.weight.shape[0] == 64


def test_bad_multiple_is_refused_by_name():
    with pytest.raises(ValueError, match="vocab_multiple_of"):
        GPTConfig(**SHAPE, vocab_multiple_of=0).validate()


@pytest.mark.parametrize("tied", [True, False])
def test_padded_model_gives_the_same_logits_loss_and_gradients(tied):
    plain, padded = pair(tie_embeddings=tied)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, VOCAB, (3, 20), generator=g)
    targets = torch.randint(0, VOCAB, (3, 20), generator=g)
    targets[0, :5] = -1  # ignored positions, as prompts and padding are in training batches
    for m in (plain, padded):
        m.train()
        m.zero_grad()
    logits_a, loss_a = plain(idx, targets)
    logits_b, loss_b = padded(idx, targets)
    assert logits_b.shape == logits_a.shape == (3, 20, VOCAB)
    assert torch.allclose(logits_b, logits_a, atol=1e-6)
    assert torch.allclose(loss_b, loss_a, atol=1e-6)
    loss_a.backward()
    loss_b.backward()
    grads_a = dict(plain.named_parameters())
    for name, p in padded.named_parameters():
        want = grads_a[name].grad
        got = p.grad if p.shape == want.shape else p.grad[:VOCAB]
        assert torch.allclose(got, want, atol=1e-6), name
        if p.shape != want.shape:
            assert p.grad[VOCAB:].abs().max() == 0, "padding rows must get no gradient"
    with torch.no_grad():
        last_a, _ = plain.eval()(idx)
        last_b, _ = padded.eval()(idx)
        at_a, _ = plain(idx, logits_at=targets >= 0)
        at_b, _ = padded(idx, logits_at=targets >= 0)
    assert last_b.shape[-1] == VOCAB and torch.allclose(last_b, last_a, atol=1e-6)
    assert at_b.shape[-1] == VOCAB and torch.allclose(at_b, at_a, atol=1e-6)


def test_padded_model_generates_the_same_tokens():
    plain, padded = pair(pos_encoding="rope", norm="rmsnorm", activation="swiglu", bias=False)
    prompts = [[1, 2, 3, 4, 5], [7, 8], [60, 59, 58]]
    for params in (
        SamplingParams(temperature=0.0, max_new_tokens=12),
        SamplingParams(temperature=1.0, top_k=20, max_new_tokens=12, seed=3, logprobs=3),
    ):
        want = generate_batch(plain, prompts, params)
        got = generate_batch(padded, prompts, params)
        assert [c.tokens for c in got] == [c.tokens for c in want]
        assert all(t < VOCAB for c in got for t in c.tokens)
        for a, b in zip(got, want, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


def test_checkpoint_records_the_padding_and_export_state_drops_it(tmp_path):
    _, padded = pair(tie_embeddings=False)
    save_checkpoint(tmp_path / "ckpt", padded, None)
    loaded, _, _ = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config.vocab_multiple_of == 64 and loaded.config.vocab_size == VOCAB
    assert torch.equal(loaded.lm_head.weight, padded.lm_head.weight)
    stripped = strip_vocab_padding(loaded.state_dict(), loaded.config)
    assert stripped["wte.weight"].shape == stripped["lm_head.weight"].shape == (VOCAB, 32)
    assert torch.equal(stripped["wte.weight"], padded.wte.weight[:VOCAB])
