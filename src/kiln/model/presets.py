"""Named model shapes: the GPT-2 family, small Llama-style and MoE models, tiny CPU models, and the
shapes of today's large models (GPT-3 175B, Llama 3 8B/70B/405B) to size on the meta device."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from kiln.model.config import GPTConfig
from kiln.model.gpt import GPT
from kiln.utils.suggest import did_you_mean

_GPT2 = dict(vocab_size=50257, block_size=1024)
_LLAMA = dict(
    pos_encoding="rope",
    norm="rmsnorm",
    activation="swiglu",
    bias=False,
    tie_embeddings=False,
)
_LLAMA3 = dict(_LLAMA, vocab_size=128256, block_size=8192, rope_theta=500000.0, n_kv_head=8)

PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # name: (what it is, GPTConfig fields)
    "gpt2": ("GPT-2 small, 124M (OpenAI 2019)", dict(_GPT2, n_layer=12, n_head=12, n_embd=768)),
    "gpt2-medium": ("GPT-2 medium, 350M", dict(_GPT2, n_layer=24, n_head=16, n_embd=1024)),
    "gpt2-large": ("GPT-2 large, 774M", dict(_GPT2, n_layer=36, n_head=20, n_embd=1280)),
    "gpt2-xl": ("GPT-2 XL, 1.5B", dict(_GPT2, n_layer=48, n_head=25, n_embd=1600)),
    "llama-small": (
        "Llama-style 12 x 768: RoPE, RMSNorm, SwiGLU, GQA (12 q / 4 kv heads), untied",
        dict(_LLAMA, vocab_size=32000, block_size=2048, n_layer=12, n_head=12, n_kv_head=4, n_embd=768),
    ),
    "moe-small": (
        "Llama-style MoE 8 x 512: 8 experts, top-2 routing",
        dict(
            _LLAMA,
            vocab_size=32000,
            block_size=1024,
            n_layer=8,
            n_head=8,
            n_kv_head=4,
            n_embd=512,
            mlp_hidden=1024,
            n_experts=8,
            moe_top_k=2,
        ),
    ),
    "tiny": (
        "tiny GPT-2-style for CPU: 4 x 128, 4 heads (nanoGPT's CPU shape)",
        dict(vocab_size=256, block_size=256, n_layer=4, n_head=4, n_embd=128),
    ),
    "tiny-llama": (
        "tiny Llama-style for CPU: 4 x 128, 4 q / 2 kv heads",
        dict(_LLAMA, vocab_size=256, block_size=256, n_layer=4, n_head=4, n_kv_head=2, n_embd=128),
    ),
    "tiny-moe": (
        "tiny MoE for CPU: 4 x 128, 4 experts, top-2",
        dict(
            _LLAMA,
            vocab_size=256,
            block_size=256,
            n_layer=4,
            n_head=4,
            n_kv_head=2,
            n_embd=128,
            mlp_hidden=256,
            n_experts=4,
        ),
    ),
    "char-cpu": (
        "char-level Tiny Shakespeare on 2 CPU cores: 6 x 192, RoPE, RMSNorm, SwiGLU",
        dict(_LLAMA, vocab_size=65, block_size=128, n_layer=6, n_head=6, n_embd=192, tie_embeddings=True),
    ),
    "gpt3-175b": (
        "GPT-3 175B shape (Brown et al. 2020); size it on the meta device",
        dict(_GPT2, block_size=2048, n_layer=96, n_head=96, n_embd=12288),
    ),
    "llama3-8b": (
        "Llama 3 8B shape; size it on the meta device",
        dict(_LLAMA3, n_layer=32, n_head=32, n_embd=4096, mlp_hidden=14336),
    ),
    "llama3-70b": (
        "Llama 3 70B shape; size it on the meta device",
        dict(_LLAMA3, n_layer=80, n_head=64, n_embd=8192, mlp_hidden=28672),
    ),
    "llama3-405b": (
        "Llama 3 405B shape; size it on the meta device",
        dict(_LLAMA3, n_layer=126, n_head=128, n_embd=16384, mlp_hidden=53248),
    ),
}


def unknown_preset(name: str) -> str:
    """The message for a preset name that is not one: the likely one, then every choice."""
    return f"unknown model preset {name!r}{did_you_mean(name, PRESETS)} (choose one of: {', '.join(PRESETS)})"


def preset_names() -> list[str]:
    return list(PRESETS)


def preset(name: str, **overrides: Any) -> GPTConfig:
    """The named config, with any field overridden (e.g. `preset("tiny", vocab_size=65)`)."""
    if name not in PRESETS:
        raise ValueError(unknown_preset(name))
    return replace(GPTConfig(**PRESETS[name][1]), **overrides).validate()


def build(config: GPTConfig | str, device: torch.device | str | None = None) -> GPT:
    """A model from a config or preset name. device="meta" allocates nothing: shapes, parameter counts
    and memory needs of a 405B model come out in milliseconds on a laptop."""
    cfg = preset(config) if isinstance(config, str) else config
    if device is None:
        return GPT(cfg)
    with torch.device(device):
        return GPT(cfg)
