"""AdamW with its two moment buffers stored in bfloat16: 4 bytes of optimizer state a parameter instead of 8.

For a model trained in fp32 master weights, AdamW's exp_avg and exp_avg_sq are two thirds of the training state
(weights 4 bytes, moments 8): bf16 moments cut a 124M model's state from 1.5 GB to 1.0 GB, which is room for a larger
micro-batch on a GPU. The update itself runs in fp32: each step widens the moments to fp32, applies exactly
torch.optim.AdamW's update (decoupled weight decay, bias correction, eps outside the root), and narrows them back.

Why by hand: torch's AdamW keeps its moments in the parameter's dtype, and torchao's low-bit AdamWs quantise them to
8 or 4 bits with block scales (a different trade, and a dependency). The one subtle part is the narrowing. bf16 has
8 significant bits, so round-to-nearest drops any change under half a unit in the last place: with beta2 = 0.999 the
second moment moves by 0.1% a step and stops growing once that falls under bf16's 0.2-0.4% spacing. Stochastic
rounding (round up with probability equal to the discarded fraction) keeps the expectation exact, so the moments
track their fp32 values on average (tests/train/test_adamw_bf16.py checks both). The random bits come from torch's
global generator, which checkpoints save and restore, so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def round_to_bf16(x: Tensor, noise: Tensor | None = None) -> Tensor:
    """fp32 -> bf16 by stochastic rounding: add uniform noise below bf16's last bit, then truncate (exact in bf16).

    `noise`: int32 values in [0, 2^16) (drawn here when not given)."""
    bits = x.float().contiguous().view(torch.int32)
    if noise is None:
        noise = torch.randint(0, 1 << 16, bits.shape, dtype=torch.int32, device=bits.device)
    return ((bits + noise) & -65536).view(torch.float32).to(torch.bfloat16)


def _two_noises(like: Tensor) -> tuple[Tensor, Tensor]:
    """Two independent 16-bit noises from one draw of 31 random bits an element: drawing is most of the rounding's
    cost on a CPU (torch's CPU generator is sequential, ~6 ns a number; a GPU's is parallel and cheap)."""
    r = torch.empty(like.shape, dtype=torch.int32, device=like.device).random_()  # [0, 2^31)
    # Bits 0-15 for one, bits 16-30 (15 bits, doubled: a step of 2 in 2^16, bias 2^-17 of a unit) for the other.
    return r & 0xFFFF, (r >> 16) << 1


CHUNK = 1 << 17
"""Elements a CPU step updates at a time (512 KB of fp32 per temporary)."""


class AdamWBF16States(torch.optim.Optimizer):
    """torch.optim.AdamW's update with exp_avg and exp_avg_sq held in `state_dtype` (bfloat16, or float32 to check
    the arithmetic against torch's)."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        state_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        if state_dtype not in (torch.bfloat16, torch.float32):
            raise ValueError(f"state_dtype must be bfloat16 or float32, got {state_dtype}")
        self.state_dtype = state_dtype
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(
                        p, dtype=self.state_dtype, memory_format=torch.contiguous_format
                    )
                    state["exp_avg_sq"] = torch.zeros_like(
                        p, dtype=self.state_dtype, memory_format=torch.contiguous_format
                    )
                for key in ("exp_avg", "exp_avg_sq"):  # load_state_dict casts saved moments to the parameter's dtype
                    if state[key].dtype != self.state_dtype:
                        state[key] = state[key].to(self.state_dtype).contiguous()
                state["step"] += 1
                t = int(state["step"].item())
                self._update(p, state["exp_avg"], state["exp_avg_sq"], lr, wd, eps, beta1, beta2, t)
        return loss

    def _update(
        self, p: Tensor, m_s: Tensor, v_s: Tensor, lr: float, wd: float, eps: float, b1: float, b2: float, t: int
    ) -> None:
        """One parameter's step, a chunk of elements at a time: the fp32 temporaries of a chunk stay in cache (a
        chain of whole-tensor ops streams memory once per op; 3-4x slower on a CPU) and never take the memory of
        a whole fp32 copy of the moments, which is what bf16 moments are for."""
        grad = p.grad
        assert grad is not None
        # Flat views; a strided parameter goes through a contiguous copy, written back at the end.
        pf = p.view(-1) if p.is_contiguous() else p.detach().contiguous().view(-1)
        gf, mf, vf = grad.reshape(-1), m_s.view(-1), v_s.view(-1)
        step_size, root_c2 = lr / (1 - b1**t), math.sqrt(1 - b2**t)
        # On a GPU each op is a kernel launch: whole tensors there (its memory holds the temporaries).
        chunk = pf.numel() if pf.device.type == "cuda" else CHUNK
        for i in range(0, pf.numel(), chunk):
            sl = slice(i, i + chunk)
            g = gf[sl].float()
            m = mf[sl].float().lerp_(g, 1 - b1)  # with float32 moments, a view of the state: updated in place
            v = vf[sl].float().mul_(b2).addcmul_(g, g, value=1 - b2)
            if self.state_dtype == torch.bfloat16:
                noise_m, noise_v = _two_noises(m)
                mf[sl] = round_to_bf16(m, noise_m)
                vf[sl] = round_to_bf16(v, noise_v)
            denom = v.sqrt().div_(root_c2).add_(eps)  # not in place: v may be the state itself (float32)
            pf[sl].mul_(1 - lr * wd).addcdiv_(m.to(pf.dtype), denom.to(pf.dtype), value=-step_size)
        if pf.data_ptr() != p.data_ptr():
            p.copy_(pf.view_as(p))
