"""Models for the arena's tests: the session's two (tests/serve_support.py: `bpe-chat` can chat, `char` cannot)
plus `bpe-chat-2`, a second chat model (bpe-chat with seeded noise on its weights), so that a completion battle
(any two) and a chat battle (two that can chat) can both be drawn, and two chat models answer differently."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from kiln.model.checkpoint import load_checkpoint, save_checkpoint


def arena_models(serve_models: Path, root: Path) -> Path:
    """root/models with bpe-chat, bpe-chat-2 and char (tiny checkpoints: this takes well under a second)."""
    models = root / "models"
    for name in ("bpe-chat", "char"):
        shutil.copytree(serve_models / name, models / name)
    model, tokenizer, _ = load_checkpoint(serve_models / "bpe-chat")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 2.0 * p.std().nan_to_num(0.02))
    save_checkpoint(models / "bpe-chat-2", model, tokenizer)
    return models
