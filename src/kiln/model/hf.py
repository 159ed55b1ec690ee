"""Weight conversion between kiln's GPT and Hugging Face transformers' GPT-2 and Llama layouts.

Pure tensor renaming (no transformers import), so kiln can load OpenAI's GPT-2 or a Llama checkpoint
saved as safetensors, and tests/benchmarks can check kiln against the transformers implementation
with identical weights. GPT-2's `Conv1D` stores weights as (in, out): they are transposed here.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from kiln.model.config import GPTConfig

_GPT2_BLOCK = {
    "ln_1.weight": "norm1.weight",
    "ln_1.bias": "norm1.bias",
    "attn.c_attn.weight": "attn.qkv.weight",
    "attn.c_attn.bias": "attn.qkv.bias",
    "attn.c_proj.weight": "attn.proj.weight",
    "attn.c_proj.bias": "attn.proj.bias",
    "ln_2.weight": "norm2.weight",
    "ln_2.bias": "norm2.bias",
    "mlp.c_fc.weight": "mlp.fc.weight",
    "mlp.c_fc.bias": "mlp.fc.bias",
    "mlp.c_proj.weight": "mlp.proj.weight",
    "mlp.c_proj.bias": "mlp.proj.bias",
}
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gpt2_config(n_layer: int, n_head: int, n_embd: int, vocab_size: int = 50257, block_size: int = 1024) -> GPTConfig:
    """The kiln config that matches a Hugging Face GPT2Config's shape."""
    return GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)


def from_hf_gpt2(sd: Mapping[str, Tensor], n_layer: int) -> dict[str, Tensor]:
    """HF GPT2LMHeadModel / GPT2Model state dict -> kiln GPT state dict (tied head)."""
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    out = {"wte.weight": sd["wte.weight"], "wpe.weight": sd["wpe.weight"]}
    out["norm_f.weight"], out["norm_f.bias"] = sd["ln_f.weight"], sd["ln_f.bias"]
    for i in range(n_layer):
        for hf_name, name in _GPT2_BLOCK.items():
            w = sd[f"h.{i}.{hf_name}"]
            out[f"blocks.{i}.{name}"] = w.t().contiguous() if hf_name in _CONV1D else w
    out["lm_head.weight"] = out["wte.weight"]
    return out


def to_hf_gpt2(sd: Mapping[str, Tensor], n_layer: int) -> dict[str, Tensor]:
    """kiln GPT (GPT-2 shape) state dict -> HF GPT2LMHeadModel state dict."""
    out = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"]}
    out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = sd["norm_f.weight"], sd["norm_f.bias"]
    for i in range(n_layer):
        for hf_name, name in _GPT2_BLOCK.items():
            w = sd[f"blocks.{i}.{name}"]
            out[f"transformer.h.{i}.{hf_name}"] = w.t().contiguous() if hf_name in _CONV1D else w
    out["lm_head.weight"] = sd["wte.weight"]
    return out


def from_hf_llama(sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """HF LlamaForCausalLM state dict -> kiln GPT state dict (q/k/v and gate/up fused into one matmul each)."""
    sd = {k.removeprefix("model."): v for k, v in sd.items()}
    out = {"wte.weight": sd["embed_tokens.weight"], "norm_f.weight": sd["norm.weight"]}
    out["lm_head.weight"] = sd.get("lm_head.weight", sd["embed_tokens.weight"])
    for i in range(cfg.n_layer):
        p = f"layers.{i}."
        q, k, v = (sd[p + f"self_attn.{x}_proj.weight"] for x in "qkv")
        out[f"blocks.{i}.attn.qkv.weight"] = torch.cat([q, k, v])
        out[f"blocks.{i}.attn.proj.weight"] = sd[p + "self_attn.o_proj.weight"]
        gate, up = sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]
        out[f"blocks.{i}.mlp.fc.weight"] = torch.cat([gate, up])
        out[f"blocks.{i}.mlp.proj.weight"] = sd[p + "mlp.down_proj.weight"]
        out[f"blocks.{i}.norm1.weight"] = sd[p + "input_layernorm.weight"]
        out[f"blocks.{i}.norm2.weight"] = sd[p + "post_attention_layernorm.weight"]
    return out
