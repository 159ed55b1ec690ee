"""Muon: momentum SGD whose update for each weight matrix is orthogonalised (Keller Jordan, 2024).

Adam scales each coordinate on its own; Muon instead replaces a matrix's momentum M = U S V^T by (about)
U V^T, so every direction in the update moves at the same rate and rare directions are not drowned by
common ones. modded-nanogpt and nanochat train their hidden matrices with it and reach a given loss in
markedly fewer steps than AdamW. It is only for 2-D hidden weights: embeddings, the LM head, norms and
biases stay on AdamW (see `kiln.train.optim`).

U V^T is approximated with five steps of a quintic Newton-Schulz iteration whose coefficients are tuned
to push singular values toward 1 fast (not exactly to 1: ~[0.7, 1.2] is good enough and far cheaper than
an SVD). Written here because torch.optim.Muon (torch >= 2.9) is not in the torch versions kiln supports
and does not handle FSDP-sharded parameters; this one gathers a sharded matrix, orthogonalises it and
keeps the local shard.
"""

from __future__ import annotations

import torch
from torch import Tensor

_NS_COEFFS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: Tensor, steps: int = 5) -> Tensor:
    """Approximately U V^T of g = U S V^T by a quintic Newton-Schulz iteration (bf16 on GPU, fp32 on CPU,
    where bf16 matmuls may be slow)."""
    a, b, c = _NS_COEFFS
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    transposed = x.size(-2) > x.size(-1)
    if transposed:  # iterate on the short side: X X^T is then the small Gram matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    if transposed:
        x = x.mT
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Nesterov momentum, then an orthogonalised update scaled by sqrt(max(1, rows/cols)) so tall and wide
    matrices get updates of the same RMS; decoupled weight decay as AdamW's."""

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
    ) -> None:
        if lr <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"Muon needs lr > 0 and momentum in [0, 1), got lr={lr}, momentum={momentum}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, ns_steps=ns_steps)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon takes 2-D weight matrices only, got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # Matrices of one shape (the same projection in every layer) are orthogonalised together as a
            # batch: a few large batched matmuls instead of many small ones (as modded-nanogpt does).
            by_shape: dict[tuple, list[tuple[Tensor, Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                update = p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                by_shape.setdefault((tuple(p.shape), _is_sharded(update)), []).append((p, update))
            for (_, sharded), items in by_shape.items():
                if sharded:
                    ortho = [_orthogonalize_sharded(u, group["ns_steps"]) for _, u in items]
                else:
                    ortho = orthogonalize(torch.stack([u for _, u in items]), group["ns_steps"]).unbind(0)
                for (p, _), o in zip(items, ortho, strict=True):
                    rows, cols = p.shape
                    if group["weight_decay"]:
                        p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(o, alpha=-group["lr"] * max(1.0, rows / cols) ** 0.5)
        return loss


def _is_sharded(t: Tensor) -> bool:
    return type(t).__name__ == "DTensor"


def _orthogonalize_sharded(update: Tensor, steps: int) -> Tensor:
    """Orthogonalise an FSDP-sharded DTensor as a whole matrix (every rank computes the same full result and
    keeps its own shard: orthogonalising shards separately would be a different update)."""
    from torch.distributed.tensor import distribute_tensor

    full = orthogonalize(update.full_tensor(), steps)
    return distribute_tensor(full, update.device_mesh, update.placements)
