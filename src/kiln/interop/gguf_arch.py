"""An HF config.json -> the GGUF architecture and the hyperparameter keys llama.cpp reads for it.

GPT-2 (learned positions, LayerNorm, tanh-GELU) is llama.cpp's "gpt2"; Llama and Mistral (RoPE, RMSNorm,
SwiGLU, GQA/MQA) are "llama", and so is Mixtral (llama.cpp runs a llama with `expert_count` > 0 as MoE).
The keys are those llama.cpp's converter writes (`{arch}.context_length`, ...). A config setting that
llama.cpp would read differently (another activation, RoPE scaling it would not apply, sliding-window
attention) is refused by name, never exported as a different model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import gguf
from torch import Tensor

from kiln.interop.gguf_errors import GGUFExportError
from kiln.interop.gguf_tensors import gpt2_tensors, llama_tensors

_ARCHITECTURES = {
    "GPT2LMHeadModel": "gpt2",
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "MixtralForCausalLM": "mixtral",
}


@dataclass(frozen=True)
class GGUFArch:
    """What write_gguf needs to know about the model: llama.cpp's arch name, its keys, its tensors."""

    name: str
    tied: bool
    vocab_size: int
    add_hparams: Callable[[gguf.GGUFWriter], None]
    tensors: Callable[[Mapping[str, Tensor]], Iterator[tuple[str, Tensor]]]


def model_type(config: dict[str, Any]) -> str:
    kind = config.get("model_type")
    if kind is None:
        archs = config.get("architectures") or [None]
        kind = _ARCHITECTURES.get(archs[0])
    if kind not in ("gpt2", "llama", "mistral", "mixtral"):
        raise GGUFExportError(
            f"config.json: model_type {kind!r} has no GGUF export here (supported: gpt2, llama, mistral, mixtral)"
        )
    return kind


def _need(config: dict[str, Any], key: str) -> Any:
    if config.get(key) is None:
        raise GGUFExportError(f"config.json: {key} is required")
    return config[key]


def gguf_arch(config: dict[str, Any]) -> GGUFArch:
    kind = model_type(config)
    return _gpt2(config) if kind == "gpt2" else _llama(config)


def _gpt2(config: dict[str, Any]) -> GGUFArch:
    act = config.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
        # llama.cpp's gpt2 graph applies ggml_gelu, the tanh approximation; exact GELU would differ everywhere.
        raise GGUFExportError(f"config.json: activation_function {act!r}: llama.cpp's gpt2 runs tanh-GELU only")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if config.get(flag):
            raise GGUFExportError(f"config.json: {flag}=true has no llama.cpp equivalent")
    if config.get("scale_attn_weights", True) is False:
        raise GGUFExportError("config.json: scale_attn_weights=false has no llama.cpp equivalent")
    n_embd = _need(config, "n_embd")
    n_ctx = config.get("n_positions") or _need(config, "n_ctx")

    def add_hparams(w: gguf.GGUFWriter) -> None:
        w.add_context_length(n_ctx)
        w.add_embedding_length(n_embd)
        w.add_block_count(_need(config, "n_layer"))
        w.add_feed_forward_length(config.get("n_inner") or 4 * n_embd)
        w.add_head_count(_need(config, "n_head"))
        w.add_layer_norm_eps(config.get("layer_norm_epsilon", 1e-5))
        w.add_vocab_size(_need(config, "vocab_size"))

    tied = config.get("tie_word_embeddings", True)
    return GGUFArch("gpt2", tied, config["vocab_size"], add_hparams, lambda sd: gpt2_tensors(config, sd, tied))


def _rope(config: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """(rope theta, scaling) from transformers 5's `rope_parameters` or the older `rope_theta`/`rope_scaling`."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", "linear"):
        raise GGUFExportError(f"config.json: rope_type {kind!r} is not exported to GGUF (default and linear are)")
    return float(theta), params if kind == "linear" else {}


def _llama(config: dict[str, Any]) -> GGUFArch:
    if config.get("hidden_act", "silu") != "silu":
        raise GGUFExportError(f"config.json: hidden_act {config['hidden_act']!r}: llama.cpp's llama runs SwiGLU (silu)")
    if config.get("mlp_bias"):
        raise GGUFExportError("config.json: mlp_bias=true: llama.cpp's llama has no MLP biases")
    n_ctx = _need(config, "max_position_embeddings")
    window = config.get("sliding_window")
    if window is not None and window < n_ctx:
        raise GGUFExportError(f"config.json: sliding_window={window} < max_position_embeddings: llama has none")
    n_embd, n_head = _need(config, "hidden_size"), _need(config, "num_attention_heads")
    head_dim = config.get("head_dim") or n_embd // n_head
    theta, scaling = _rope(config)
    n_experts = config.get("num_local_experts") or 0

    def add_hparams(w: gguf.GGUFWriter) -> None:
        w.add_context_length(n_ctx)
        w.add_embedding_length(n_embd)
        w.add_block_count(_need(config, "num_hidden_layers"))
        w.add_feed_forward_length(_need(config, "intermediate_size"))
        w.add_head_count(n_head)
        w.add_head_count_kv(config.get("num_key_value_heads") or n_head)
        w.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
        w.add_rope_freq_base(theta)
        w.add_rope_dimension_count(head_dim)
        if config.get("head_dim"):  # the converter writes these whenever config.json names head_dim
            w.add_key_length(head_dim)
            w.add_value_length(head_dim)
        if scaling:
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(float(scaling["factor"]))
        w.add_vocab_size(_need(config, "vocab_size"))
        if n_experts:
            w.add_expert_count(n_experts)
            w.add_expert_used_count(_need(config, "num_experts_per_tok"))

    tied = bool(config.get("tie_word_embeddings", False))
    return GGUFArch("llama", tied, config["vocab_size"], add_hparams, lambda sd: llama_tensors(config, sd, tied))
