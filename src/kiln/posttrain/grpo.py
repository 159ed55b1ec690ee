"""GRPO's arithmetic (Shao et al. 2024, DeepSeekMath): group-normalised advantages and the clipped surrogate.

For G completions of one prompt with rewards r_1..r_G, each completion's advantage is (r_i - mean(r)) / (std(r) +
eps): the group is its own baseline, so no value model is needed. Every token of completion i carries A_i in
    min(ratio * A_i, clip(ratio, 1 - eps_clip, 1 + eps_clip) * A_i),   ratio = pi(token) / pi_old(token),
minus beta times the k3 estimate of KL to the reference, exp(ref - logp) - (ref - logp) - 1 (per token, always
>= 0). How the per-token terms are averaged is `loss_type`, with TRL's names:
- grpo: over each completion's tokens, then over completions (the paper's): a long completion's tokens weigh less;
- bnpo: over all completion tokens of the batch (DAPO's token-level loss): every token weighs the same;
- dr_grpo: summed per completion and divided by a constant, `max_tokens` (Dr. GRPO, Liu et al. 2025): no length
  bias, and the scale does not move with the batch's lengths.
"""

from __future__ import annotations

import torch
from torch import Tensor

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo")


def group_advantages(rewards: Tensor, group: int, eps: float = 1e-4, scale: bool = True) -> Tensor:
    """(B*G,) rewards, completions of a prompt adjacent -> (B*G,) advantages. A group whose rewards are all equal
    gets zeros: it carries no signal. `scale=False` leaves out the division by the std (Dr. GRPO)."""
    r = rewards.view(-1, group).float()
    centred = r - r.mean(dim=1, keepdim=True)
    if scale and group > 1:
        std = r.std(dim=1, keepdim=True, unbiased=True)
        centred = torch.where(std > 0, centred / (std + eps), torch.zeros_like(centred))
    return centred.reshape(-1)


def grpo_loss(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip: float = 0.2,
    ref_logp: Tensor | None = None, kl_beta: float = 0.0, loss_type: str = "grpo", max_tokens: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
    """logp, old_logp, ref_logp, mask: (N, T) per completion token; advantages: (N,). Returns (loss, stats).
    `max_tokens` (dr_grpo's constant) defaults to T."""
    ratio = torch.exp(logp - old_logp)
    adv = advantages[:, None]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    per_token = -surrogate
    kl = torch.zeros_like(logp)
    if ref_logp is not None and kl_beta:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1
        per_token = per_token + kl_beta * kl
    m = mask.float()
    summed = (per_token * m).sum(dim=1)
    if loss_type == "grpo":
        loss = (summed / m.sum(dim=1).clamp(min=1)).mean()
    elif loss_type == "bnpo":
        loss = summed.sum() / m.sum().clamp(min=1)
    elif loss_type == "dr_grpo":
        loss = summed.sum() / (len(summed) * (max_tokens or m.shape[1]))
    else:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {', '.join(LOSS_TYPES)}")
    clipped = ((ratio - 1).abs() > clip).float()
    stats = {
        "kl": ((kl * m).sum() / m.sum().clamp(min=1)).detach(),
        "clip_fraction": ((clipped * m).sum() / m.sum().clamp(min=1)).detach(),
    }
    return loss, stats
