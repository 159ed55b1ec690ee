"""`kiln sft CHECKPOINT DATA...` as a stage: `run(SFTConfig) -> SFTSummary`.

`--show-mask` prints the first conversation as the model sees it, with the tokens the loss trains highlighted,
and stops: the quickest way to check that a data format is read as intended.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from kiln.posttrain.sft_config import SFTConfig
from kiln.stage import Summary


@dataclass
class SFTSummary(Summary):
    """How a fine-tuning run ended (or, with --show-mask, the rendered example)."""

    out_dir: str
    steps: int = 0
    tokens: int = 0
    train_loss: float = math.nan
    val_loss: float = math.nan
    """Held-out loss on assistant tokens."""
    best_val_loss: float = math.nan
    val_token_acc: float | None = None
    """Held-out share of assistant tokens the model predicts exactly (greedy)."""
    tokens_per_s: float = math.nan
    elapsed_s: float = math.nan
    checkpoint: str | None = None
    interrupted: int | None = None
    is_main: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    shown: str = ""
    error: str | None = None

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        if self.interrupted:
            return 128 + int(self.interrupted)
        return 1 if self.error else 0

    def render(self) -> str:
        if self.shown:
            return self.shown
        if not self.is_main or self.interrupted:
            return ""
        if self.error:
            return f"kiln sft: {self.error}"
        d = self.data
        return (
            f"\nheld-out assistant loss {self.val_loss:.4f}, token accuracy {self.val_token_acc or 0:.3f} after "
            f"{self.steps} steps ({d.get('conversations', 0):,} conversations in {d.get('train_windows', 0):,} "
            f"windows, {d.get('fill', 0):.0%} filled)\n"
            f"checkpoints: {self.out_dir}   (chat with it: kiln serve --models {self.out_dir})"
        )


def show(config: SFTConfig) -> str:
    """The first conversation rendered with kiln's chat template, trained tokens highlighted."""
    from kiln.model.checkpoint import TOKENIZER_DIR, resolve_checkpoint
    from kiln.posttrain.conversations import read_conversations
    from kiln.posttrain.render import render_for_training, require_chat_tokens, show_mask
    from kiln.tokenizer import load_tokenizer

    source = resolve_checkpoint(config.checkpoint)
    tok = load_tokenizer(source / TOKENIZER_DIR)
    require_chat_tokens(tok, config.checkpoint)
    conv = read_conversations(config.inputs)[0]
    ids, trained = render_for_training(tok, conv.turns)
    legend = "trained tokens in green" if sys.stdout.isatty() else "trained tokens in «»"
    body = show_mask(tok, ids, trained, color=sys.stdout.isatty())
    return f"{conv.source} ({len(ids)} tokens, {sum(trained)} trained; {legend}):\n{body}"


def run(config: SFTConfig) -> SFTSummary:
    from kiln.posttrain.sft_trainer import SFTTrainer
    from kiln.train import distributed as D
    from kiln.train.trainer import TrainingDiverged

    config.validate()
    if config.show_mask:
        return SFTSummary(out_dir=str(config.out_dir), shown=show(config))
    info, device = D.init_distributed(config.device)
    try:
        result = SFTTrainer(config, info, device, print, config.resume).fit()
    except TrainingDiverged as e:
        is_main = int(os.environ.get("RANK", "0")) == 0
        return SFTSummary(out_dir=str(config.out_dir), steps=e.steps, error=str(e), is_main=is_main)
    finally:
        D.shutdown()
    keys = SFTSummary.__dataclass_fields__
    return SFTSummary(**{k: v for k, v in result.items() if k in keys})
