"""`SFTConfig`: a fine-tuning run is a training run (every optimizer, schedule, precision, parallelism and
checkpoint option of `kiln train`) whose model comes from a checkpoint and whose data are conversations."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from kiln.config import from_dict, load_config, parse_override
from kiln.model import GPTConfig
from kiln.train.config import TrainConfig
from kiln.train.state import find_resume_dir, read_trainer_state
from kiln.utils.checks import require

C = TypeVar("C", bound="FineTuneConfig")


@dataclass
class FineTuneConfig(TrainConfig):
    """What every fine-tuning run shares: a model from a checkpoint, data files instead of token shards."""

    data: str = ""
    """Not used in fine-tuning: the data files are `inputs`."""
    preset: str = "checkpoint"
    """Not used in fine-tuning: the model is the checkpoint's."""
    model: GPTConfig = field(default_factory=GPTConfig)
    """Set from the checkpoint (the shape cannot change in fine-tuning)."""
    checkpoint: str = ""
    """The model to fine-tune: a kiln checkpoint or a training run (its best checkpoint)."""
    inputs: list[str] = field(default_factory=list)
    """The data files."""
    overlong: Literal["truncate", "drop"] = "truncate"
    """A sample longer than the context: keep its first block_size + 1 tokens, or drop it (counted)."""
    max_examples: int | None = None
    """Use only the first N records (None = all)."""
    sample_tokens: int = 0
    """Not used in fine-tuning."""
    weight_decay: float = 0.0
    """AdamW weight decay (none by default: fine-tuning stays near the pretrained weights)."""

    def validate(self) -> FineTuneConfig:
        if not self.checkpoint and self.inputs and Path(self.inputs[0]).is_dir():
            # `kiln <stage> CHECKPOINT DATA...`: the first bare argument is the model (a directory), the rest data.
            self.checkpoint = self.inputs.pop(0)
        require(bool(self.checkpoint) or self.resume is not None, "checkpoint is required: the model to fine-tune")
        require(bool(self.inputs) or self.resume is not None, "inputs is required: one or more data files")
        require(self.overlong in ("truncate", "drop"), f"overlong must be truncate or drop, got {self.overlong!r}")
        if self.max_examples is not None:
            require(self.max_examples >= 1, f"max_examples must be >= 1, got {self.max_examples}")
        super().validate()
        return self


@dataclass
class LoraOptions:
    """LoRA settings of the fine-tuning stages that offer it (SFT, GRPO): kiln.posttrain.lora applies them."""

    lora_rank: int = 0
    """LoRA adapters of this rank on `lora_targets` (through peft), the base frozen, merged into each saved
    checkpoint; 0 = full fine-tuning."""
    lora_alpha: float = 16.0
    """LoRA's scale numerator: the update is (lora_alpha / lora_rank) B A."""
    lora_targets: list[str] = field(default_factory=lambda: ["qkv", "proj", "fc"])
    """Names of the Linear layers that get adapters (kiln's fused q/k/v, attention output, MLP in and out)."""

    def check_lora(self) -> None:
        require(self.lora_rank >= 0, f"lora_rank must be >= 0 (0 = off), got {self.lora_rank}")
        require(self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha}")
        require(bool(self.lora_targets), "lora_targets must name at least one layer")
        fsdp = self.parallel == "fsdp" and self.device != "cpu"  # type: ignore[attr-defined]  # a TrainConfig's
        require(not (self.lora_rank and fsdp), "lora_rank with parallel=fsdp is not supported")


@dataclass
class SFTConfig(LoraOptions, FineTuneConfig):
    """Supervised fine-tuning of a checkpoint on chat conversations (loss on the assistant's tokens only)."""

    out_dir: Path = Path("runs/sft")
    """The run directory: checkpoints, metrics.jsonl, kiln-sft.toml."""
    inputs: list[str] = field(default_factory=list)
    """Conversation files (JSONL or a JSON array; .gz too): chat `messages`, ShareGPT `conversations`, Alpaca
    `instruction/input/output`, `prompt/completion` or `question/answer` records."""
    packing: bool = True
    """Pack several conversations into each window (attention and positions kept per conversation); off = one
    conversation per window, padded."""
    show_mask: bool = False
    """Print the first conversation as the model sees it, trained tokens highlighted, and exit."""
    batch_size: int = 8
    """Windows per micro-batch."""
    max_steps: int = 200
    """Optimizer steps."""
    lr: float = 3e-4
    """Peak learning rate (fine-tuning wants a smaller one than pretraining)."""
    warmup_steps: int = 10
    """Linear warmup steps."""
    eval_interval: int = 50
    """Steps between evaluations of the held-out assistant loss and token accuracy."""
    eval_batches: int = 50
    """Most held-out batches per evaluation."""
    val_fraction: float = 0.05
    """Share of conversations held out (at least one)."""
    keyword_weight: float = 1.0
    """Loss weight of the tokens of a record's `words` (the words its instruction asks for, as the quickstart's
    word task writes them) where they occur in the assistant's replies, against 1 for every other assistant
    token; 1 = plain SFT. Raising it teaches a small model to copy the words from the prompt (see
    docs/benchmarks.md, post-training effects). The held-out loss stays unweighted."""

    def validate(self) -> SFTConfig:
        require(self.keyword_weight > 0, f"keyword_weight must be > 0, got {self.keyword_weight}")
        self.check_lora()
        super().validate()
        return self


def load_finetune_config(cls: type[C], path: str | Path | None, overrides: Sequence[str] = ()) -> C:
    """`kiln <sft|dpo> [CONFIG.toml] [key=value ...]`; with resume=DIR the run's own saved config is the base."""
    from kiln.model.checkpoint import read_config, resolve_checkpoint

    resume = None
    for item in overrides:
        key, value = parse_override(item)
        if key == "resume":
            resume = None if value is None else item.partition("=")[2].strip()
    if resume is not None:
        ckpt = find_resume_dir(resume)
        state = read_trainer_state(ckpt)
        base = from_dict(cls, state["train_config"], where=str(ckpt / "trainer_state.json"))
        base.out_dir = ckpt.parent.parent
        others = [o for o in overrides if parse_override(o)[0] != "resume"]
        cfg = load_config(cls, path, others, base=base)
        cfg.resume = resume
        return cfg
    cfg = load_config(cls, path, overrides)
    if cfg.checkpoint and Path(cfg.checkpoint).is_dir():
        # Shown in the resolved config; the trainer reads it again from the checkpoint (a run directory too) and
        # reports a missing or broken one there.
        with contextlib.suppress(ValueError, OSError):
            cfg.model, _ = read_config(resolve_checkpoint(cfg.checkpoint))
    return cfg


def load_sft_config(path: str | Path | None, overrides: Sequence[str] = ()) -> SFTConfig:
    return load_finetune_config(SFTConfig, path, overrides)
