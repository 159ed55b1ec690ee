"""kiln's `GPTConfig` <-> a Hugging Face `config.json`, for the architectures that compute the same function.

kiln's one config spans choices that Hugging Face splits into model classes: learned positions + LayerNorm +
GELU is `GPT2LMHeadModel`; RoPE + RMSNorm + SwiGLU is `LlamaForCausalLM` (`MistralForCausalLM` when attention
is a sliding window, `MixtralForCausalLM` with experts). A combination no class computes exactly (ALiBi,
sinusoidal positions, post-norm, ...) is refused with the option's name: a model exported "nearly right" would
produce different text in vLLM than in kiln, with nothing to say why.

The mapping is plain JSON (no transformers import), so export works where transformers is not installed; the
tests load every exported combination with transformers itself and compare logits.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kiln.model.config import GPTConfig


class UnsupportedModel(ValueError):
    """A model whose architecture no Hugging Face class (or no kiln option) represents exactly."""


def hf_architecture(cfg: GPTConfig) -> str:
    """The transformers model type that computes exactly what `cfg` does, or UnsupportedModel naming the option."""

    def refuse(option: str, value: Any, why: str) -> UnsupportedModel:
        return UnsupportedModel(f"cannot export {option}={value!r}: {why}")

    if cfg.norm_position != "pre":
        raise refuse("norm_position", cfg.norm_position, "GPT-2, Llama, Mistral and Mixtral are all pre-norm")
    if cfg.pos_encoding in ("alibi", "sinusoidal", "none"):
        raise refuse("pos_encoding", cfg.pos_encoding, "only learned (GPT-2) and rope (Llama) positions map")
    if cfg.pos_encoding == "learned":
        for option, value, want in (
            ("norm", cfg.norm, "layernorm"),
            ("bias", cfg.bias, True),
            ("n_kv_head", cfg.kv_heads, cfg.n_head),
            ("attention_window", cfg.attention_window, None),
            ("n_experts", cfg.n_experts, 0),
        ):
            if value != want:
                raise refuse(option, value, f"learned positions export as GPT-2, which needs {option}={want!r}")
        if cfg.activation == "swiglu":
            raise refuse("activation", cfg.activation, "GPT-2's MLP is not gated (gelu or relu)")
        return "gpt2"
    for option, value, want in (("norm", cfg.norm, "rmsnorm"), ("activation", cfg.activation, "swiglu")):
        if value != want:
            raise refuse(option, value, f"rope exports as Llama/Mistral/Mixtral, which need {option}={want!r}")
    if cfg.n_experts:
        if cfg.bias:
            raise refuse("bias", cfg.bias, "Mixtral has no bias vectors")
        return "mixtral"
    if cfg.attention_window is not None:
        if cfg.bias:
            raise refuse("bias", cfg.bias, "Mistral (sliding-window attention) has no bias vectors")
        return "mistral"
    return "llama"


def to_hf_config(cfg: GPTConfig, *, bos_id: int | None, eos_id: int | None, dtype: str) -> dict[str, Any]:
    """The config.json a transformers class loads `cfg`'s weights into, with no custom code."""
    arch = hf_architecture(cfg)
    common = {
        "model_type": arch,
        "vocab_size": cfg.vocab_size,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": cfg.init_std,
        "torch_dtype": dtype,  # transformers 4.x's name; 5.x reads "dtype" and accepts this one
        "dtype": dtype,
        "use_cache": True,
    }
    if arch == "gpt2":
        return {
            "architectures": ["GPT2LMHeadModel"],
            **common,
            "n_positions": cfg.block_size,
            "n_ctx": cfg.block_size,
            "n_embd": cfg.n_embd,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_inner": cfg.hidden_dim,
            # kiln's gelu is the tanh approximation, which transformers calls gelu_new.
            "activation_function": "gelu_new" if cfg.activation == "gelu" else "relu",
            "layer_norm_epsilon": cfg.norm_eps,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "scale_attn_weights": True,
            "scale_attn_by_inverse_layer_idx": False,
            "reorder_and_upcast_attn": False,
        }
    out = {
        "architectures": [
            {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}.get(arch, "MixtralForCausalLM")
        ],
        **common,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.block_size,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "attention_dropout": 0.0,
    }
    if arch == "llama":
        out |= {"attention_bias": cfg.bias, "mlp_bias": cfg.bias, "pretraining_tp": 1}
    else:
        out["sliding_window"] = cfg.attention_window
    if arch == "mixtral":
        out |= {
            "num_local_experts": cfg.n_experts,
            "num_experts_per_tok": cfg.moe_top_k,
            "router_aux_loss_coef": cfg.moe_aux_loss_coef,
            "router_jitter_noise": 0.0,
            "output_router_logits": False,
        }
    return out


# Families kiln imports, by config.json's model_type: the Llama family (incl. Mistral, Qwen2, Mixtral) and GPT-2.
IMPORTABLE = ("gpt2", "llama", "mistral", "qwen2", "mixtral")


def from_hf_config(hf: dict[str, Any], where: str = "config.json") -> GPTConfig:
    """A Hugging Face config.json -> the kiln config that computes the same function (or UnsupportedModel)."""
    model_type = hf.get("model_type")
    if model_type not in IMPORTABLE:
        raise UnsupportedModel(
            f"{where}: model_type {model_type!r} is not importable; kiln imports {', '.join(IMPORTABLE)}"
        )

    def need(key: str) -> Any:
        if key not in hf:
            raise UnsupportedModel(f"{where}: {key!r} is missing")
        return hf[key]

    if model_type == "gpt2":
        act = hf.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "relu"):
            raise UnsupportedModel(f"{where}: activation_function {act!r} (kiln has tanh-gelu and relu)")
        for key in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if hf.get(key):
                raise UnsupportedModel(f"{where}: {key}=true has no kiln equivalent")
        if hf.get("scale_attn_weights") is False:
            raise UnsupportedModel(f"{where}: scale_attn_weights=false has no kiln equivalent")
        n_embd = need("n_embd")
        cfg = GPTConfig(
            vocab_size=need("vocab_size"),
            block_size=need("n_positions"),
            n_layer=need("n_layer"),
            n_head=need("n_head"),
            n_embd=n_embd,
            mlp_hidden=hf.get("n_inner") or 4 * n_embd,
            activation="relu" if act == "relu" else "gelu",
            norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            tie_embeddings=hf.get("tie_word_embeddings", True),
            init_std=hf.get("initializer_range", 0.02),
        )
        return _implicit_width(cfg)

    if hf.get("hidden_act", "silu") != "silu":
        raise UnsupportedModel(f"{where}: hidden_act {hf.get('hidden_act')!r} (kiln's SwiGLU uses silu)")
    scaling = hf.get("rope_scaling") or {}
    rope_params = hf.get("rope_parameters") or {}
    rope_type = scaling.get("rope_type", scaling.get("type")) or rope_params.get("rope_type") or "default"
    if rope_type != "default":
        raise UnsupportedModel(f"{where}: rope scaling {rope_type!r} is not implemented in kiln (only plain RoPE)")
    if hf.get("pretraining_tp", 1) != 1:
        raise UnsupportedModel(f"{where}: pretraining_tp={hf['pretraining_tp']} is not supported")
    hidden, heads = need("hidden_size"), need("num_attention_heads")
    head_dim = hf.get("head_dim") or hidden // heads
    if head_dim * heads != hidden:
        raise UnsupportedModel(f"{where}: head_dim {head_dim} x {heads} heads != hidden_size {hidden} (kiln ties them)")
    if hf.get("mlp_bias") and not hf.get("attention_bias"):
        raise UnsupportedModel(f"{where}: mlp_bias without attention_bias has no kiln equivalent")
    window = None
    if model_type in ("mistral", "mixtral"):
        window = hf.get("sliding_window")
    elif model_type == "qwen2" and hf.get("use_sliding_window"):
        raise UnsupportedModel(f"{where}: Qwen2's per-layer sliding windows (use_sliding_window) are not supported")
    # Qwen2 has q/k/v biases (and none elsewhere): kiln's single bias flag covers it with zero o/MLP biases.
    bias = bool(hf.get("attention_bias")) or model_type == "qwen2"
    theta = hf.get("rope_theta", rope_params.get("rope_theta", 10000.0))
    cfg = GPTConfig(
        vocab_size=need("vocab_size"),
        block_size=need("max_position_embeddings"),
        n_layer=need("num_hidden_layers"),
        n_head=heads,
        n_embd=hidden,
        n_kv_head=hf.get("num_key_value_heads") or heads,
        pos_encoding="rope",
        rope_theta=float(theta),
        norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        activation="swiglu",
        mlp_hidden=need("intermediate_size"),
        bias=bias,
        tie_embeddings=hf.get("tie_word_embeddings", False),
        attention_window=window,
        n_experts=hf.get("num_local_experts", 0) if model_type == "mixtral" else 0,
        moe_top_k=hf.get("num_experts_per_tok", 2),
        moe_aux_loss_coef=hf.get("router_aux_loss_coef", 0.01),
        init_std=hf.get("initializer_range", 0.02),
    )
    return _implicit_width(cfg)


def _implicit_width(cfg: GPTConfig) -> GPTConfig:
    """Leave mlp_hidden unset when it is the width kiln would derive anyway: the config reads as written."""
    if dataclasses.replace(cfg, mlp_hidden=None).hidden_dim == cfg.hidden_dim:
        cfg.mlp_hidden = None
    return cfg.validate()
