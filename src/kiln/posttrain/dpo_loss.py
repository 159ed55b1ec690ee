"""Preference losses on sequence log-probabilities: DPO (sigmoid), IPO and SimPO.

With policy log-probs pi_c, pi_r of the chosen and rejected replies and reference log-probs ref_c, ref_r:
- DPO (Rafailov et al. 2023): -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)));
- IPO (Azar et al. 2023): ((pi_c - ref_c) - (pi_r - ref_r) - 1 / (2 beta))^2, on log-probs averaged over each
  reply's tokens (as TRL computes it);
- SimPO (Meng et al. 2024): -log sigmoid(beta * (avg pi_c - avg pi_r) - gamma), reference-free, on
  length-averaged log-probs.
The implicit rewards logged are beta * (pi - ref) (SimPO: beta * avg pi), as TRL logs them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class PreferenceTerms:
    loss: Tensor
    """Per pair."""
    chosen_rewards: Tensor
    rejected_rewards: Tensor


def preference_loss(
    kind: str,
    beta: float,
    pi_c: Tensor,
    pi_r: Tensor,
    ref_c: Tensor | None,
    ref_r: Tensor | None,
    n_c: Tensor,
    n_r: Tensor,
    gamma: float = 0.5,
) -> PreferenceTerms:
    """pi_*/ref_*: summed log-probs per pair; n_*: the replies' token counts (for the length-averaged losses)."""
    if kind == "simpo":
        avg_c, avg_r = pi_c / n_c, pi_r / n_r
        loss = -F.logsigmoid(beta * (avg_c - avg_r) - gamma)
        return PreferenceTerms(loss, (beta * avg_c).detach(), (beta * avg_r).detach())
    assert ref_c is not None and ref_r is not None, "DPO and IPO need reference log-probs"
    if kind == "ipo":
        margin = (pi_c - ref_c) / n_c - (pi_r - ref_r) / n_r
        loss = (margin - 1 / (2 * beta)) ** 2
    elif kind == "sigmoid":
        margin = (pi_c - ref_c) - (pi_r - ref_r)
        loss = -F.logsigmoid(beta * margin)
    else:
        raise ValueError(f"unknown preference loss {kind!r}; choose sigmoid, ipo or simpo")
    return PreferenceTerms(loss, (beta * (pi_c - ref_c)).detach(), (beta * (pi_r - ref_r)).detach())


def sequence_logps(logits: Tensor, targets: Tensor, ignore: int = -1) -> tuple[Tensor, Tensor]:
    """(summed log-prob of the trained targets, their count) per row of (B, T, V) logits and (B, T) targets."""
    keep = targets != ignore
    logp = torch.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * keep).sum(-1), keep.sum(-1)


def selected_logps(logits: Tensor, targets: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """As `sequence_logps`, from (N, V) logits computed only where `keep` (B, T) is True (`logits_at=`)."""
    return owned_logps(logits, targets[keep], keep.nonzero(as_tuple=True)[0], keep.shape[0])


def owned_logps(logits: Tensor, targets: Tensor, owner: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """(N, V) logits, (N,) targets and (N,) owners in [0, n) -> each owner's summed target log-prob and target
    count; log-softmax is never materialised for the whole vocabulary."""
    lf = logits.float()
    lp = lf.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(lf, dim=-1)
    total = torch.zeros(n, dtype=lp.dtype, device=lp.device).index_add(0, owner, lp)
    return total, torch.bincount(owner, minlength=n)
