"""GRPO's arithmetic (Shao et al. 2024, DeepSeekMath): group-normalised advantages and the clipped surrogate.

For G completions of one prompt with rewards r_1..r_G, each completion's advantage is (r_i - mean(r)) / (std(r) +
eps): the group is its own baseline, so no value model is needed. Every token of completion i carries A_i in
    min(ratio * A_i, clip(ratio, 1 - eps_clip, 1 + eps_clip) * A_i),   ratio = pi(token) / pi_old(token),
averaged over the completion's tokens and then over completions (the paper's normalisation), minus beta times
the k3 estimate of KL to the reference, exp(ref - logp) - (ref - logp) - 1 (per token, always >= 0).
"""

from __future__ import annotations

import torch
from torch import Tensor


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
    ref_logp: Tensor | None = None, kl_beta: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
    """logp, old_logp, ref_logp, mask: (N, T) per completion token; advantages: (N,). Returns (loss, stats)."""
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
    lengths = m.sum(dim=1).clamp(min=1)
    loss = ((per_token * m).sum(dim=1) / lengths).mean()
    clipped = ((ratio - 1).abs() > clip).float()
    stats = {
        "kl": ((kl * m).sum() / m.sum().clamp(min=1)).detach(),
        "clip_fraction": ((clipped * m).sum() / m.sum().clamp(min=1)).detach(),
    }
    return loss, stats
