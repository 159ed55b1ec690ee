"""Shared by the interop tests: a Unicode sample, the kiln variants that map to Hugging Face classes, and
checkpoints of them with weights far from the default init."""

from __future__ import annotations

from pathlib import Path

import torch

from kiln.interop.export_hf import ExportHFConfig, run
from kiln.model import GPT, GPTConfig
from kiln.model.checkpoint import save_checkpoint

# Text with every kind of character the tokenizers must agree on: accents, CJK, emoji, digits, newlines, and the
# special tokens by name.
UNICODE_SAMPLE = (
    "Hello, world! Ünïcödé — naïve café 123456 10.5%\n\tTabs\n\n  spaces  日本語のテキスト 🙂👍🏽 "
    "<|endoftext|>After the boundary. <|im_start|>user\nhi<|im_end|>"
)


SHAPE = dict(block_size=64, n_layer=2, n_head=4, n_embd=64)
LLAMA = dict(pos_encoding="rope", norm="rmsnorm", activation="swiglu", bias=False, rope_theta=5000.0, norm_eps=1e-6)
VARIANTS = {
    "gpt2-tied-gelu": {},
    "gpt2-untied-relu": dict(tie_embeddings=False, activation="relu", mlp_hidden=96),
    "llama-mha-tied": LLAMA,
    "llama-gqa-untied": {**LLAMA, "n_kv_head": 2, "tie_embeddings": False},
    "llama-mqa-bias": {**LLAMA, "n_kv_head": 1, "bias": True},
    "mistral-window": {**LLAMA, "n_kv_head": 2, "attention_window": 8, "tie_embeddings": False},
    "mixtral-moe": {**LLAMA, "n_kv_head": 2, "n_experts": 4, "moe_top_k": 2, "mlp_hidden": 48},
}
EXPECTED_CLASS = {
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "mixtral": "MixtralForCausalLM",
}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Weights far from the default init (norm gains and biases too), so a mismatch anywhere shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_((0.15 if p.dim() > 1 else 0.05) * noise)


def make_checkpoint(tmp_path: Path, tok, seed: int = 0, **overrides) -> tuple[Path, GPT]:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, **{**SHAPE, **overrides})).eval()
    randomize(model, seed)
    return save_checkpoint(tmp_path / "ckpt", model, tok), model


def export(ckpt: Path, out: Path, **kw) -> Path:
    run(ExportHFConfig(checkpoint=str(ckpt), out_dir=str(out), **kw))
    return out
