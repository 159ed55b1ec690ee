"""`PlanConfig`: what `kiln plan` is asked — a budget (FLOPs, GPU-hours or money) and/or a model and tokens —
and the hardware and parallelism to size it for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kiln.utils.checks import require

Precision = Literal["fp32", "bf16", "fp8"]
Strategy = Literal["ddp", "zero1", "zero2", "fsdp"]
LawName = Literal["approach1", "approach2", "approach3", "approach3-law", "besiroglu"]


class PlanError(ValueError):
    """A plan that cannot work (fits on no number of the GPUs, a budget below one step); the message names the
    nearest feasible alternative."""


@dataclass
class PlanConfig:
    """A training plan. Give one budget (flops, gpu_hours, or money with price_per_gpu_hour), or a model (preset
    or depth) with tokens, or both a budget and a model."""

    flops: float | None = None
    """Training compute budget in FLOPs (e.g. 5.76e23, Chinchilla's)."""
    gpu_hours: float | None = None
    """Budget in GPU-hours of `gpu` at `mfu`, instead of flops."""
    money: float | None = None
    """Budget in money (needs price_per_gpu_hour), instead of flops or gpu_hours."""
    price_per_gpu_hour: float | None = None
    """Price of one GPU-hour; turns money into GPU-hours and prices the plan (None = no cost shown)."""
    gpu: str = "H100-SXM"
    """The accelerator (see docs/scaling.md for the table): its memory and peak FLOP/s."""
    mfu: float = 0.4
    """Model FLOPs utilisation: the share of the GPU's peak a run achieves (measured by kiln train, or assumed;
    0.3-0.5 is typical of well-tuned large runs)."""
    gpus: int = 8
    """GPUs the run uses (sets wall-clock and the per-device memory table)."""
    preset: str | None = None
    """Plan this model preset (see kiln model) instead of the compute-optimal size."""
    depth: int | None = None
    """Plan the model of this depth (width 64·depth, heads, batch and learning rate from nanochat's rule)."""
    tokens: float | None = None
    """Training tokens for the chosen model (None = the budget's, or the compute-optimal count for its size)."""
    law: LawName = "approach1"
    """Which law sizes the model when no preset or depth is given."""
    vocab_size: int = 50257
    """Vocabulary of depth-derived models (GPT-2's BPE by default)."""
    seq_len: int | None = None
    """Training context length (None = the model's block_size; 2048 for depth-derived models)."""
    batch_tokens: int | None = None
    """Tokens per optimizer step (None = 2^19 = 524,288, nanochat's and about GPT-3 Small's)."""
    micro_batch: int = 1
    """Sequences per device per micro-step (sets activation memory; accumulation reaches batch_tokens)."""
    precision: Precision = "bf16"
    """Training precision: fp32, bf16 (mixed, fp32 master weights) or fp8 (fp8 matmuls, bf16-mixed states)."""
    strategy: Strategy = "fsdp"
    """The data-parallel strategy the plan highlights: ddp, zero1, zero2 or fsdp (= ZeRO-3)."""
    tensor_parallel: int = 1
    """Tensor-parallel degree the plan highlights (1, 2, 4 or 8: within one node); gpus must be a multiple."""
    checkpointing: bool = False
    """Full activation checkpointing (recompute each layer in backward) in the highlighted configuration."""
    flash: bool = True
    """FlashAttention/SDPA (never stores the s×s attention scores); false counts them as Korthikanti et al."""
    memory_headroom: float = 0.9
    """The share of a GPU's memory a plan may use (the rest: CUDA context, allocator fragmentation, buffers)."""
    out_dir: Path | None = None
    """Also write plan.json and kiln-plan.toml into this directory (None = print only)."""

    def validate(self) -> PlanConfig:
        from kiln.model.presets import PRESETS
        from kiln.plan.gpus import get_gpu

        budgets = [n for n in ("flops", "gpu_hours", "money") if getattr(self, n) is not None]
        require(len(budgets) <= 1, f"give one budget, not {' and '.join(budgets)}")
        require(
            bool(budgets) or self.preset is not None or self.depth is not None,
            "give a budget (flops=, gpu_hours= or money=) or a model (preset= or depth=), e.g. kiln plan flops=1e21",
        )
        for name in ("flops", "gpu_hours", "money", "price_per_gpu_hour", "tokens"):
            value = getattr(self, name)
            require(value is None or value > 0, f"{name} must be > 0, got {value}")
        require(
            self.money is None or self.price_per_gpu_hour is not None,
            "money needs price_per_gpu_hour (e.g. price_per_gpu_hour=2.5)",
        )
        require(self.preset is None or self.depth is None, "give preset or depth, not both")
        if self.preset is not None:
            require(self.preset in PRESETS, f"unknown preset {self.preset!r}; choose one of: {', '.join(PRESETS)}")
        if self.depth is not None:
            require(1 <= self.depth <= 1000, f"depth must be between 1 and 1000, got {self.depth}")
        get_gpu(self.gpu)
        require(0 < self.mfu <= 1, f"mfu must be in (0, 1], got {self.mfu}")
        require(self.gpus >= 1, f"gpus must be >= 1, got {self.gpus}")
        require(self.vocab_size >= 1, f"vocab_size must be >= 1, got {self.vocab_size}")
        require(self.seq_len is None or self.seq_len >= 1, f"seq_len must be >= 1, got {self.seq_len}")
        require(
            self.batch_tokens is None or self.batch_tokens >= 1, f"batch_tokens must be >= 1, got {self.batch_tokens}"
        )
        require(self.micro_batch >= 1, f"micro_batch must be >= 1, got {self.micro_batch}")
        require(
            self.precision in ("fp32", "bf16", "fp8"), f"precision must be fp32, bf16 or fp8; got {self.precision!r}"
        )
        require(
            self.strategy in ("ddp", "zero1", "zero2", "fsdp"),
            f"strategy must be ddp, zero1, zero2 or fsdp; got {self.strategy!r}",
        )
        require(
            self.tensor_parallel in (1, 2, 4, 8), f"tensor_parallel must be 1, 2, 4 or 8, got {self.tensor_parallel}"
        )
        require(
            self.gpus % self.tensor_parallel == 0,
            f"gpus ({self.gpus}) must be a multiple of tensor_parallel ({self.tensor_parallel})",
        )
        require(0 < self.memory_headroom <= 1, f"memory_headroom must be in (0, 1], got {self.memory_headroom}")
        return self
