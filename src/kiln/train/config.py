"""`TrainConfig`: everything a training run needs, as one typed dataclass (TOML file + key=value overrides)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kiln.model import GPTConfig, preset
from kiln.utils.checks import require

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Schedule = Literal["cosine", "wsd", "constant"]
OptimizerName = Literal["adamw", "muon"]
Parallel = Literal["ddp", "fsdp"]


@dataclass
class TrainConfig:
    """A pretraining run. The defaults train a char-level Tiny Shakespeare model in a few CPU minutes."""

    data: str = "shakespeare"
    """A UTF-8 text file (char-level), "shakespeare" (the bundled Tiny Shakespeare), or a directory of
    token shards written by `kiln tokenize` (train*.bin, val*.bin and tokenizer/)."""
    out_dir: Path = Path("runs/shakespeare-char")
    preset: str = "char-cpu"
    """The model preset; `model.<field>=...` overrides any of its fields."""
    model: GPTConfig = field(default_factory=lambda: preset("char-cpu"))

    # ---- batch
    batch_size: int = 32
    """Sequences per micro-step per process."""
    total_batch_tokens: int | None = None
    """Tokens per optimizer step over all processes; a multiple of batch_size x block_size x world size,
    reached by gradient accumulation. None = one micro-step per process (no accumulation)."""
    max_steps: int = 2000
    max_minutes: float | None = None
    """Stop after this much wall-clock time (checked every step), whatever max_steps says; the schedule
    then anneals by time, so a time-boxed run still ends on a low learning rate."""

    # ---- optimizer and schedule
    optimizer: OptimizerName = "adamw"
    """adamw for everything, or muon for the hidden weight matrices (AdamW for embeddings, head, norms)."""
    lr: float = 3e-3
    """AdamW's peak learning rate."""
    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    muon_weight_decay: float = 0.0
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    schedule: Schedule = "cosine"
    """cosine: warmup then cosine decay to min_lr_ratio; wsd: warmup, stable, then a linear decay over the
    last decay_fraction of the run (warmup-stable-decay); constant: warmup then flat."""
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    decay_fraction: float = 0.2
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    loss_spike_factor: float = 4.0
    """Stop (keeping the last good checkpoint) when the loss is not finite, or after warmup exceeds this
    many times its running average (0 = only non-finite losses stop the run)."""

    # ---- performance
    precision: Precision = "auto"
    """auto = bf16 autocast on GPUs that support it (fp16 + loss scaling on older ones); on CPU, bf16 only when
    a quick probe shows bf16 matmuls beating fp32, else fp32. Master weights are always fp32."""
    compile: bool = False
    """torch.compile the model (slow first step, faster after)."""
    parallel: Parallel = "ddp"
    """Under torchrun with more than one process: ddp (replicate) or fsdp (FSDP2 fully_shard)."""
    device: str = "auto"
    threads: int | None = None
    """CPU threads for torch (None = torch's default, one per core)."""
    seed: int = 1337

    # ---- evaluation, logging, checkpoints
    eval_interval: int = 250
    eval_batches: int = 20
    val_fraction: float = 0.1
    """For a text file: the share of it (at the end) held out for validation."""
    log_interval: int = 10
    """Write a metrics.jsonl line every this many steps (and at every evaluation)."""
    checkpoint_interval: int | None = None
    """Save every this many steps (None = at every evaluation); also on SIGINT/SIGTERM and at the end."""
    overwrite: bool = False
    """Start over in an out_dir that holds an earlier run (deleting its checkpoints, data and metrics);
    without it, such an out_dir is an error (continue it with --resume instead)."""
    keep_last: int = 2
    """Checkpoints kept besides the best one."""
    tensorboard: bool = False
    peak_tflops: float | None = None
    """The device's peak for MFU (per process). None = a table for known GPUs, a quick matmul probe on CPU."""
    sample_tokens: int = 300
    """Tokens of sample text printed at the end (0 = none)."""

    def validate(self) -> TrainConfig:
        for name in ("batch_size", "max_steps", "eval_interval", "eval_batches", "log_interval", "keep_last"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "muon_lr", "eps"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        require(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        require(0 < self.decay_fraction <= 1, f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        require(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        require(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        require(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(self.muon_weight_decay >= 0, f"muon_weight_decay must be >= 0, got {self.muon_weight_decay}")
        for name, choices in (
            ("schedule", ("cosine", "wsd", "constant")),
            ("optimizer", ("adamw", "muon")),
            ("precision", ("auto", "fp32", "bf16", "fp16")),
            ("parallel", ("ddp", "fsdp")),
        ):
            value = getattr(self, name)
            require(value in choices, f"{name} must be one of {', '.join(choices)}; got {value!r}")
        for name in ("beta1", "beta2", "muon_momentum"):
            require(0 <= getattr(self, name) < 1, f"{name} must be in [0, 1), got {getattr(self, name)}")
        require(
            self.loss_spike_factor == 0 or self.loss_spike_factor > 1,
            f"loss_spike_factor must be 0 (off) or > 1, got {self.loss_spike_factor}",
        )
        if self.total_batch_tokens is not None:
            require(self.total_batch_tokens >= 1, f"total_batch_tokens must be >= 1, got {self.total_batch_tokens}")
        if self.checkpoint_interval is not None:
            require(self.checkpoint_interval >= 1, f"checkpoint_interval must be >= 1, got {self.checkpoint_interval}")
        if self.max_minutes is not None:
            require(self.max_minutes > 0, f"max_minutes must be > 0, got {self.max_minutes}")
        if self.peak_tflops is not None:
            require(self.peak_tflops > 0, f"peak_tflops must be > 0, got {self.peak_tflops}")
        self.model.validate()
        return self

    def grad_accum_steps(self, world_size: int) -> int:
        """Micro-steps per optimizer step so that all processes together see total_batch_tokens."""
        per_micro = self.batch_size * self.model.block_size * world_size
        if self.total_batch_tokens is None:
            return 1
        require(
            self.total_batch_tokens % per_micro == 0,
            f"total_batch_tokens {self.total_batch_tokens} is not a multiple of batch_size {self.batch_size} x "
            f"block_size {self.model.block_size} x {world_size} process(es) = {per_micro}",
        )
        return self.total_batch_tokens // per_micro
