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


def from_hf_gpt2(sd: Mapping[str, Tensor], n_layer: int, tied: bool = True) -> dict[str, Tensor]:
    """HF GPT2LMHeadModel / GPT2Model state dict -> kiln GPT state dict (tied head unless `tied` is False)."""
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    out = {"wte.weight": sd["wte.weight"], "wpe.weight": sd["wpe.weight"]}
    out["norm_f.weight"], out["norm_f.bias"] = sd["ln_f.weight"], sd["ln_f.bias"]
    for i in range(n_layer):
        for hf_name, name in _GPT2_BLOCK.items():
            w = sd[f"h.{i}.{hf_name}"]
            out[f"blocks.{i}.{name}"] = w.t().contiguous() if hf_name in _CONV1D else w
    out["lm_head.weight"] = out["wte.weight"] if tied else sd["lm_head.weight"]
    return out


def to_hf_gpt2(sd: Mapping[str, Tensor], n_layer: int, tied: bool = True) -> dict[str, Tensor]:
    """kiln GPT (GPT-2 shape) state dict -> HF GPT2LMHeadModel state dict (the head under its own name too:
    transformers ties or not by its config)."""
    out = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"]}
    out["transformer.ln_f.weight"], out["transformer.ln_f.bias"] = sd["norm_f.weight"], sd["norm_f.bias"]
    for i in range(n_layer):
        for hf_name, name in _GPT2_BLOCK.items():
            w = sd[f"blocks.{i}.{name}"]
            out[f"transformer.h.{i}.{hf_name}"] = w.t().contiguous() if hf_name in _CONV1D else w
    out["lm_head.weight"] = sd["wte.weight"] if tied else sd["lm_head.weight"]
    return out


def from_hf_llama(sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """HF Llama-family state dict (Llama, Mistral, Qwen2, Mixtral) -> kiln GPT state dict.

    q/k/v and gate/up are fused into one matmul each. Both use HF's rotate-half RoPE layout, so q and k need no
    permutation. With `cfg.bias`, a bias HF lacks (Qwen2 has q/k/v biases only) is zero: the same function."""
    sd = {k.removeprefix("model."): v for k, v in sd.items()}
    out = {"wte.weight": sd["embed_tokens.weight"], "norm_f.weight": sd["norm.weight"]}
    out["lm_head.weight"] = sd["embed_tokens.weight"] if cfg.tie_embeddings else sd["lm_head.weight"]

    def bias(name: str, size: int, like: Tensor) -> Tensor:
        return sd[name] if name in sd else torch.zeros(size, dtype=like.dtype, device=like.device)

    for i in range(cfg.n_layer):
        p, k_ = f"layers.{i}.", f"blocks.{i}."
        q, k, v = (sd[p + f"self_attn.{x}_proj.weight"] for x in "qkv")
        out[k_ + "attn.qkv.weight"] = torch.cat([q, k, v])
        out[k_ + "attn.proj.weight"] = sd[p + "self_attn.o_proj.weight"]
        out[k_ + "norm1.weight"] = sd[p + "input_layernorm.weight"]
        out[k_ + "norm2.weight"] = sd[p + "post_attention_layernorm.weight"]
        if cfg.bias:
            out[k_ + "attn.qkv.bias"] = torch.cat(
                [bias(p + f"self_attn.{x}_proj.bias", w.shape[0], w) for x, w in zip("qkv", (q, k, v), strict=True)]
            )
            out[k_ + "attn.proj.bias"] = bias(p + "self_attn.o_proj.bias", cfg.n_embd, q)
        if cfg.n_experts:
            m = p + "block_sparse_moe."
            out[k_ + "mlp.router.weight"] = sd[m + "gate.weight"]
            for e in range(cfg.n_experts):
                x = f"{m}experts.{e}."
                out[f"{k_}mlp.experts.{e}.fc.weight"] = torch.cat([sd[x + "w1.weight"], sd[x + "w3.weight"]])
                out[f"{k_}mlp.experts.{e}.proj.weight"] = sd[x + "w2.weight"]
            continue
        gate, up = sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]
        out[k_ + "mlp.fc.weight"] = torch.cat([gate, up])
        out[k_ + "mlp.proj.weight"] = sd[p + "mlp.down_proj.weight"]
        if cfg.bias:
            out[k_ + "mlp.fc.bias"] = torch.cat(
                [bias(p + f"mlp.{x}_proj.bias", w.shape[0], w) for x, w in (("gate", gate), ("up", up))]
            )
            out[k_ + "mlp.proj.bias"] = bias(p + "mlp.down_proj.bias", cfg.n_embd, gate)
    return out


def to_hf_llama(sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """kiln GPT state dict (rope + rmsnorm + swiglu) -> HF Llama / Mistral / Mixtral names, tensors unfused.

    A tied head is written once (as embed_tokens), as transformers saves it."""
    hd, nq, nkv = cfg.head_dim, cfg.n_head, cfg.kv_heads
    split = [nq * hd, nkv * hd, nkv * hd]
    out = {"model.embed_tokens.weight": sd["wte.weight"], "model.norm.weight": sd["norm_f.weight"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    for i in range(cfg.n_layer):
        p, k_ = f"model.layers.{i}.", f"blocks.{i}."
        for x, w in zip("qkv", sd[k_ + "attn.qkv.weight"].split(split), strict=True):
            out[p + f"self_attn.{x}_proj.weight"] = w.contiguous()
        out[p + "self_attn.o_proj.weight"] = sd[k_ + "attn.proj.weight"]
        out[p + "input_layernorm.weight"] = sd[k_ + "norm1.weight"]
        out[p + "post_attention_layernorm.weight"] = sd[k_ + "norm2.weight"]
        if cfg.bias:
            for x, b in zip("qkv", sd[k_ + "attn.qkv.bias"].split(split), strict=True):
                out[p + f"self_attn.{x}_proj.bias"] = b.contiguous()
            out[p + "self_attn.o_proj.bias"] = sd[k_ + "attn.proj.bias"]
        if cfg.n_experts:
            m = p + "block_sparse_moe."
            out[m + "gate.weight"] = sd[k_ + "mlp.router.weight"]
            for e in range(cfg.n_experts):
                gate, up = sd[f"{k_}mlp.experts.{e}.fc.weight"].chunk(2)
                out[f"{m}experts.{e}.w1.weight"] = gate.contiguous()
                out[f"{m}experts.{e}.w3.weight"] = up.contiguous()
                out[f"{m}experts.{e}.w2.weight"] = sd[f"{k_}mlp.experts.{e}.proj.weight"]
            continue
        gate, up = sd[k_ + "mlp.fc.weight"].chunk(2)
        out[p + "mlp.gate_proj.weight"], out[p + "mlp.up_proj.weight"] = gate.contiguous(), up.contiguous()
        out[p + "mlp.down_proj.weight"] = sd[k_ + "mlp.proj.weight"]
        if cfg.bias:
            gate_b, up_b = sd[k_ + "mlp.fc.bias"].chunk(2)
            out[p + "mlp.gate_proj.bias"], out[p + "mlp.up_proj.bias"] = gate_b.contiguous(), up_b.contiguous()
            out[p + "mlp.down_proj.bias"] = sd[k_ + "mlp.proj.bias"]
    return out
