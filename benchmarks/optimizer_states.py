"""AdamW with bf16 moments (`kiln train optimizer_state_dtype=bfloat16`) against torch's fused AdamW: memory of the
moments and time of one optimizer step on gpt2's 124M parameters, the same gradients on both sides.

    python benchmarks/optimizer_states.py [--device cpu|cuda] [--rounds 3]

What differs: torch's fused AdamW is one kernel over all parameters with fp32 moments; kiln's is Python over the
parameters (in 512 KB chunks on a CPU) with stochastic rounding of the moments to bf16, whose random bits are most of
its CPU time. The updates are checked to agree (to bf16's rounding of the moments) after the timed steps.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from kiln.model import build
from kiln.train.adamw_bf16 import AdamWBF16States


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    start = build("gpt2").to(device)
    grads = [torch.randn_like(p) * 1e-3 for p in start.parameters()]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {where}; gpt2 (124M), best of {args.rounds}")
    results = {}
    for name in ("torch AdamW (fused, fp32 moments)", "kiln AdamWBF16States (bf16 moments)"):
        params = [p.detach().clone().requires_grad_() for p in start.parameters()]
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        if name.startswith("torch"):
            opt: torch.optim.Optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True)
        else:
            opt = AdamWBF16States(params, lr=1e-4)
        opt.step()  # warm-up: allocates the moments
        best = float("inf")
        for _ in range(args.rounds):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        moments = sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items() if k != "step")
        results[name] = (best, moments, params)
        print(f"{name:<40} {best * 1e3:8.0f} ms/step   moments {moments / 1e6:6.0f} MB")
    (t_ref, m_ref, p_ref), (t_k, m_k, p_k) = results.values()
    moved = max((a - b).abs().max().item() for a, b in zip(p_ref, start.parameters(), strict=True))
    diff = max((a - b).abs().max().item() for a, b in zip(p_k, p_ref, strict=True))
    assert diff < 0.02 * moved, f"updates disagree: {diff} against a move of {moved}"
    print(f"moments {m_k / m_ref:.2f}x the memory; step time {t_k / t_ref:.1f}x torch's fused AdamW")
    print(f"updates agree: largest weight difference {diff:.2e} against a largest move of {moved:.2e}")


if __name__ == "__main__":
    main()
