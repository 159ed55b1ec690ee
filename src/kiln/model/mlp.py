"""The feed-forward half of a block: a plain MLP (GELU / ReLU), Llama's SwiGLU, or a mixture of experts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.model.config import GPTConfig


class MLP(nn.Module):
    """x -> act(x W1) W2, or for SwiGLU silu(x Wg) * (x Wu) W2 with Wg and Wu fused into one matmul."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.activation = cfg.activation
        gated = 2 if cfg.activation == "swiglu" else 1
        self.fc = nn.Linear(cfg.n_embd, gated * cfg.hidden_dim, bias=cfg.bias)
        self.proj = nn.Linear(cfg.hidden_dim, cfg.n_embd, bias=cfg.bias)
        self.proj.residual = True

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        if self.activation == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif self.activation == "gelu":
            h = F.gelu(h, approximate="tanh")
        else:
            h = F.relu(h)
        return self.proj(h)


class MoE(nn.Module):
    """Token-choice top-k mixture of experts (Switch / Mixtral style).

    A router scores every expert per token; each token goes to its top-k experts and their outputs are
    mixed by the renormalised router probabilities. `aux_loss` is Switch Transformer's load-balancing
    term, n_experts · Σ_e f_e · P_e (f_e: share of routed slots, P_e: mean router probability), which is
    1.0 when experts are used evenly and grows as routing collapses onto a few.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.top_k = cfg.moe_top_k
        self.router = nn.Linear(cfg.n_embd, cfg.n_experts, bias=False)
        self.experts = nn.ModuleList(MLP(cfg) for _ in range(cfg.n_experts))
        self.aux_loss: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        probs = F.softmax(self.router(flat).float(), dim=-1)
        weights, chosen = probs.topk(self.top_k, dim=-1)
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            out.index_add_(0, rows, expert(flat[rows]) * weights[rows, slot, None])
        n_experts = len(self.experts)
        routed = F.one_hot(chosen, n_experts).sum(1).float().mean(0) / self.top_k
        self.aux_loss = n_experts * (routed * probs.mean(0)).sum()
        return out.view(shape)
