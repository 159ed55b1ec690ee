"""`logits_at` under bf16 on the CPU: the scored rows are padded to one of a few sizes (`bucket_rows`) so that
oneDNN reuses its compiled kernels instead of building one per row count; what comes back is exactly the rows
asked for, with the values and gradients of the unpadded computation."""

from __future__ import annotations

import torch

from kiln.model import GPT, GPTConfig
from kiln.model.gpt import bucket_rows


def test_bucket_rows_few_sizes_little_waste():
    sizes = [bucket_rows(n) for n in range(1, 8193)]
    assert len(set(sizes)) <= 40  # against 8,192 row counts
    for n, b in enumerate(sizes, start=1):
        assert b >= n and b % 64 == 0
        assert b - n < 64 or b - n < n / 8, (n, b)


def test_bf16_logits_at_returns_the_rows_asked_for_with_their_gradients():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=2, n_embd=64)).eval()
    idx = torch.randint(0, 97, (3, 24))
    mask = torch.rand(3, 24) < 0.5
    n = int(mask.sum())
    assert bucket_rows(n) > n  # the padded path is taken
    grads = []
    for scored in ("at", "full"):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(idx, logits_at=mask)[0] if scored == "at" else model(idx, all_logits=True)[0][mask]
        assert logits.shape == (n, 97)
        (logits.float() * torch.linspace(-1, 1, 97)).sum().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
        if scored == "at":
            at = logits.detach().float()
        else:
            full = logits.detach().float()
    assert torch.allclose(at, full, atol=2e-2, rtol=2e-2)
    for k, g in grads[0].items():
        assert torch.allclose(g, grads[1][k], atol=2e-2, rtol=5e-2), k
