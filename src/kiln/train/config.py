"""`TrainConfig`: everything a training run needs, as one typed dataclass (TOML file + key=value overrides),
and `load_train_config`, which builds it the way `kiln train [CONFIG.toml] [key=value ...]` does."""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kiln.config import from_dict, load_config, parse_override
from kiln.model import GPTConfig, preset
from kiln.train.state import find_resume_dir, read_trainer_state
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
    """The run directory: checkpoints/, metrics.jsonl, data/ (a tokenized text file) and kiln-train.toml (this
    resolved config, without `resume`)."""
    preset: str = "char-cpu"
    """The model preset; `model.<field>=...` overrides any of its fields."""
    model: GPTConfig = field(default_factory=lambda: preset("char-cpu"))
    """The model's shape and architecture: the preset's, with any `model.<field>=...` applied on top."""

    # ---- batch
    batch_size: int = 32
    """Sequences per micro-step per process."""
    total_batch_tokens: int | None = None
    """Tokens per optimizer step over all processes; a multiple of batch_size x block_size x world size,
    reached by gradient accumulation. None = one micro-step per process (no accumulation)."""
    max_steps: int = 2000
    """Optimizer steps to train for (the schedule's length)."""
    max_minutes: float | None = None
    """Stop after this much wall-clock time (checked every step), whatever max_steps says; the schedule
    then anneals by time, so a time-boxed run still ends on a low learning rate."""

    # ---- optimizer and schedule
    optimizer: OptimizerName = "adamw"
    """adamw for everything, or muon for the hidden weight matrices (AdamW for embeddings, head, norms)."""
    lr: float = 3e-3
    """AdamW's peak learning rate."""
    muon_lr: float = 0.02
    """Muon's peak learning rate (optimizer=muon), for the hidden weight matrices."""
    muon_momentum: float = 0.95
    """Muon's Nesterov momentum."""
    muon_weight_decay: float = 0.0
    """Muon's decoupled weight decay."""
    weight_decay: float = 0.1
    """AdamW's decoupled weight decay, for matrices only (never norm gains or biases)."""
    beta1: float = 0.9
    """AdamW's first-moment (momentum) decay."""
    beta2: float = 0.99
    """AdamW's second-moment decay (0.99 rather than 0.999 suits small models and short runs, as nanoGPT)."""
    eps: float = 1e-8
    """AdamW's epsilon, added to the root of the second moment."""
    optimizer_state_dtype: str = "float32"
    """AdamW's moment buffers: float32 (torch's AdamW), or bfloat16 to hold them in half the memory (8 -> 4 bytes
    a parameter; the update still runs in fp32, the moments stored by stochastic rounding; kiln.train.adamw_bf16)."""
    schedule: Schedule = "cosine"
    """cosine: warmup then cosine decay to min_lr_ratio; wsd: warmup, stable, then a linear decay over the
    last decay_fraction of the run (warmup-stable-decay); constant: warmup then flat."""
    min_lr_ratio: float = 0.1
    """The learning rate the schedule decays to, as a fraction of the peak."""
    warmup_steps: int = 100
    """Steps of linear warmup from lr/warmup_steps to the peak (0 = none)."""
    decay_fraction: float = 0.2
    """For schedule=wsd: the share of the run (by steps, or by time with max_minutes) spent decaying."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    loss_spike_factor: float = 4.0
    """Stop (keeping the last good checkpoint) when the loss is not finite, or after warmup exceeds this
    many times its running average (0 = only non-finite losses stop the run)."""

    # ---- performance
    precision: Precision = "auto"
    """auto = bf16 autocast on GPUs that support it (fp16 + loss scaling on older ones); on CPU, bf16 with AMX, fp32
    without bf16 in hardware, and on CPUs with AVX512-BF16 but no AMX bf16 where a timed forward and backward of this
    model runs at least 1.3x faster than in fp32, else fp32 (the run's first line gives both times). A resumed run
    keeps its precision. Master weights are always fp32."""
    compile: bool = False
    """torch.compile the model (slow first step, faster after)."""
    parallel: Parallel = "ddp"
    """Under torchrun with more than one process: ddp (replicate) or fsdp (FSDP2 fully_shard)."""
    device: str = "auto"
    """auto (cuda if available, else cpu), cpu, cuda or cuda:N; under torchrun each process takes its local
    rank's GPU."""
    threads: int | None = None
    """CPU threads for torch (None = torch's default, one per core)."""
    seed: int = 1337
    """Seeds the model's initialisation and the data order (every process starts from the same weights)."""

    # ---- evaluation, logging, checkpoints
    eval_interval: int = 250
    """Evaluate on the validation batches every this many steps (and at the end)."""
    eval_batches: int = 20
    """Validation batches per evaluation, each a whole optimizer-step batch (fewer if the split is smaller)."""
    val_fraction: float = 0.1
    """For a text file: the share of it (at the end) held out for validation."""
    eval_tasks: list[str] = field(default_factory=list)
    """Downstream tasks (`kiln eval` names such as arc_easy, or .jsonl task files) scored during training into
    metrics.jsonl as "task/<name>/acc" etc. (the bundled 50-item slices; rank 0 only; not with fsdp)."""
    eval_task_interval: int = 0
    """Score eval_tasks at the evaluations whose step is a multiple of this (0 = at every evaluation)."""
    log_interval: int = 10
    """Write a metrics.jsonl line every this many steps (and at every evaluation)."""
    checkpoint_interval: int | None = None
    """Save every this many steps (None = at every evaluation); also on SIGINT/SIGTERM and at the end."""
    overwrite: bool = False
    """Start over in an out_dir that holds an earlier run (deleting its checkpoints, data and metrics);
    without it, such an out_dir is an error (continue it with --resume instead)."""
    resume: str | None = None
    """Continue the run in this directory exactly from its latest checkpoint (or from this checkpoint
    directory); the run's saved config is the base, other keys override it. Never saved with a run."""
    keep_last: int = 2
    """Checkpoints kept besides the best one."""
    tensorboard: bool = False
    """Also write TensorBoard events (out_dir/tensorboard) besides metrics.jsonl."""
    peak_tflops: float | None = None
    """The device's peak for MFU (per process). None = a table for known GPUs, a quick matmul probe on CPU."""
    sample_tokens: int = 300
    """Tokens of sample text printed at the end (0 = none)."""
    default_prompt: str | None = None
    """The prompt the playground offers for this model, stored in each checkpoint's config.json (e.g. "Once upon
    a time"). None = the first few words of the first training document."""

    def validate(self) -> TrainConfig:
        for name in ("batch_size", "max_steps", "eval_interval", "eval_batches", "log_interval", "keep_last"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "muon_lr", "eps"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        require(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        require(0 < self.decay_fraction <= 1, f"decay_fraction must be in (0, 1], got {self.decay_fraction}")
        require(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        require(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        require(self.eval_task_interval >= 0, f"eval_task_interval must be >= 0, got {self.eval_task_interval}")
        require(not (self.eval_tasks and self.parallel == "fsdp"), "eval_tasks is not supported with parallel=fsdp")
        require(
            not (self.optimizer_state_dtype == "bfloat16" and self.parallel == "fsdp"),
            "optimizer_state_dtype=bfloat16 is not supported with parallel=fsdp (its sharded states): use ddp",
        )
        require(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        require(self.muon_weight_decay >= 0, f"muon_weight_decay must be >= 0, got {self.muon_weight_decay}")
        for name, choices in (
            ("schedule", ("cosine", "wsd", "constant")),
            ("optimizer", ("adamw", "muon")),
            ("precision", ("auto", "fp32", "bf16", "fp16")),
            ("parallel", ("ddp", "fsdp")),
            ("optimizer_state_dtype", ("float32", "bfloat16")),
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
        if self.threads is not None:
            require(1 <= self.threads <= 4096, f"threads must be between 1 and 4096 (or unset), got {self.threads}")
        require(self.sample_tokens >= 0, f"sample_tokens must be >= 0 (0 = none), got {self.sample_tokens}")
        if self.peak_tflops is not None:
            require(self.peak_tflops > 0, f"peak_tflops must be > 0, got {self.peak_tflops}")
        if self.resume is not None:
            require(bool(self.resume.strip()), "resume must name a run or checkpoint directory, got an empty string")
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


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """The config of `kiln train [CONFIG.toml] [key=value ...]`.

    With `resume=DIR` (an override, or a key of the file) the base is the config that run was started with
    (`resume_config`), and the file's other keys and the overrides change it. A config file together with a
    `resume=` override is an error: resuming continues a run with its own config. Otherwise the preset (an
    override beats the file) picks the model's starting shape, and the file's and the command line's model.*
    keys apply on top of it, so `preset=tiny model.n_layer=2` is tiny with two layers.
    """
    file_data = _peek(path)
    resume_overrides = [item for item in overrides if parse_override(item)[0] == "resume"]
    others = [item for item in overrides if item not in resume_overrides]
    resume = _resume_dir(resume_overrides[-1]) if resume_overrides else None
    if resume is not None and path is not None:
        raise ValueError("resume continues a run with its own saved config; give only key=value overrides, no file")
    if resume is None and not resume_overrides and isinstance(file_data.get("resume"), str):
        resume = file_data["resume"]
    if resume is not None:
        cfg = load_config(TrainConfig, path, others, base=resume_config(resume))
        cfg.resume = resume
        return cfg
    # Any resume= override left here is resume=none, which must beat a resume key in the file.
    name = preset_name(path, overrides)
    return load_config(TrainConfig, path, overrides, base=TrainConfig(preset=name, model=preset(name)))


def resume_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """The config a run was started with (from its latest checkpoint), with `key=value` overrides applied
    (max_steps=..., say, to train on); out_dir is the run's directory and `resume` is `path`."""
    ckpt = find_resume_dir(path)
    state = read_trainer_state(ckpt)
    base = from_dict(TrainConfig, state["train_config"], where=str(ckpt / "trainer_state.json"))
    base.out_dir = ckpt.parent.parent
    base.resume = str(path)
    return load_config(TrainConfig, None, overrides, base=base)


def preset_name(path: str | Path | None, overrides: Sequence[str] = ()) -> str:
    """The `preset` a train config asks for (an override beats the file), read before the full load."""
    name = str(_peek(path).get("preset", TrainConfig.preset))
    for item in overrides:
        key, value = parse_override(item)
        if key == "preset":
            name = str(value)
    return name


def _peek(path: str | Path | None) -> dict[str, Any]:
    """The file's top-level keys, or {} when there is no readable file: load_config then reports a missing or
    malformed file, naming it."""
    if path is None or not Path(path).is_file():
        return {}
    with contextlib.suppress(tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return {}


def _resume_dir(override: str) -> str | None:
    """The directory of a `resume=...` override (None for resume=none), as typed: `resume=runs/2024` is a path,
    not a number."""
    value = parse_override(override)[1]
    if value is None:
        return None
    return value if isinstance(value, str) else override.partition("=")[2].strip()
