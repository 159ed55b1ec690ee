"""`kiln sft CHECKPOINT DATA...` as a stage: `run(SFTConfig) -> SFTSummary`.

`--show-mask` prints the first conversation as the model sees it, with the tokens the loss trains highlighted,
and stops: the quickest way to check that a data format is read as intended.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

from kiln.posttrain.finetune import FineTuneSummary, run_finetune
from kiln.posttrain.sft_config import SFTConfig


@dataclass
class SFTSummary(FineTuneSummary):
    """How a fine-tuning run ended (or, with --show-mask, the rendered example)."""

    tokens: int = 0
    best_val_loss: float = math.nan
    val_token_acc: float | None = None
    """Held-out share of assistant tokens the model predicts exactly (greedy); val_loss is their mean loss."""
    tokens_per_s: float = math.nan
    data: dict[str, Any] = field(default_factory=dict)
    shown: str = ""

    def render(self) -> str:
        return self.shown or super().render()

    def report(self) -> str:
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

    config.validate()
    if config.show_mask:
        return SFTSummary(out_dir=str(config.out_dir), shown=show(config))
    return run_finetune(SFTTrainer, SFTSummary, config)
