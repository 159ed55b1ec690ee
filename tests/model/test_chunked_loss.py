"""Chunked cross-entropy (`loss_chunk_tokens`): the same loss and gradients of every parameter as the plain
full-logits path (F.cross_entropy), with ignored targets present, and no (tokens x vocab) tensor kept for the
backward pass — measured by the tensors autograd saves."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kiln.model import GPT, GPTConfig
from kiln.model.chunked_loss import chunked_cross_entropy

SHAPE = dict(vocab_size=97, block_size=32, n_layer=2, n_head=2, n_embd=32)


def batch(vocab: int, b: int = 3, t: int = 24, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, vocab, (b, t), generator=g)
    targets = torch.randint(0, vocab, (b, t), generator=g)
    targets[0, :7] = -1
    targets[2, -3:] = -1
    return idx, targets


def grads(model: GPT, idx, targets) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    _, loss = model(idx, targets)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "kw",
    [dict(tie_embeddings=True), dict(tie_embeddings=False, vocab_multiple_of=64, pos_encoding="rope")],
    ids=["tied", "untied-padded"],
)
@pytest.mark.parametrize("chunk", [1, 10, 1000])  # one token, a chunk not dividing B*T, one chunk for all
def test_chunked_loss_and_gradients_equal_the_plain_path(kw, chunk):
    torch.manual_seed(0)
    plain = GPT(GPTConfig(**SHAPE, **kw)).train()
    chunked = GPT(GPTConfig(**SHAPE, loss_chunk_tokens=chunk, **kw)).train()
    chunked.load_state_dict(plain.state_dict())
    idx, targets = batch(SHAPE["vocab_size"])
    loss_a, grads_a = grads(plain, idx, targets)
    loss_b, grads_b = grads(chunked, idx, targets)
    assert torch.allclose(loss_b, loss_a, atol=1e-6, rtol=1e-6)  # float32 summation order
    for name, g in grads_a.items():
        assert torch.allclose(grads_b[name], g, atol=1e-6, rtol=1e-5), name
    logits, _ = chunked(idx, targets)
    assert logits is None  # never built whole
    with torch.no_grad():  # evaluation takes the no-recompute branch: same number
        _, loss_eval = chunked(idx, targets)
    assert torch.allclose(loss_eval, loss_a, atol=1e-6, rtol=1e-6)  # float32 summation order


def test_function_equals_cross_entropy_on_full_logits():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 9, 16, generator=g, requires_grad=True)
    w = torch.randn(40, 16, generator=g, requires_grad=True)  # 40 rows, 37 real ids: 3 padding rows
    y = torch.randint(0, 37, (2, 9), generator=g)
    y[1, ::2] = -1
    want = F.cross_entropy((x @ w.T)[..., :37].reshape(-1, 37), y.reshape(-1), ignore_index=-1)
    gx, gw = torch.autograd.grad(want, (x, w))
    got = chunked_cross_entropy(x, w, y, 4, 37)
    cx, cw = torch.autograd.grad(got, (x, w))
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(cx, gx, atol=1e-6) and torch.allclose(cw, gw, atol=1e-6)
    assert cw[37:].abs().max() == 0
    all_ignored = torch.full_like(y, -1)
    assert torch.isnan(chunked_cross_entropy(x, w, all_ignored, 4, 37)) == torch.isnan(
        F.cross_entropy((x @ w.T).reshape(-1, 40), all_ignored.reshape(-1), ignore_index=-1)
    )


def test_bad_chunk_is_refused_by_name():
    with pytest.raises(ValueError, match="loss_chunk_tokens"):
        GPTConfig(**SHAPE, loss_chunk_tokens=-1).validate()
    with pytest.raises(ValueError, match="chunk_tokens"):
        chunked_cross_entropy(torch.zeros(2, 4), torch.zeros(5, 4), torch.zeros(2, dtype=torch.long), 0, 5)


def saved_for_backward(model: GPT, idx, targets) -> dict[int, int]:
    """Elements of every distinct storage autograd keeps between forward and backward (a weight saved by each
    chunk, or slices of one activation, count once: they are one allocation)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes() // t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(idx, targets)
    loss.backward()
    return storages


def test_chunked_loss_keeps_no_full_logits_for_backward():
    """With a vocabulary much wider than the model, the plain path saves (tokens x vocab) logits for the
    backward pass; the chunked one saves nothing that large (its chunks' logits are recomputed)."""
    shape = dict(SHAPE, vocab_size=4096)
    torch.manual_seed(0)
    plain = GPT(GPTConfig(**shape)).train()
    chunked = GPT(GPTConfig(**shape, loss_chunk_tokens=16)).train()
    idx, targets = batch(4096, b=4, t=32)
    full = idx.numel() * 4096
    plain_sizes = saved_for_backward(plain, idx, targets).values()
    chunked_sizes = saved_for_backward(chunked, idx, targets).values()
    assert max(plain_sizes) >= full
    assert max(chunked_sizes) < full // 2  # the largest is the head's weight (4096 x 32), not logits
    assert sum(chunked_sizes) <= sum(plain_sizes) - full  # all the rest is the same
