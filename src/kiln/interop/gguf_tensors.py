"""Hugging Face tensor names and layouts -> GGUF's, as llama.cpp's convert_hf_to_gguf.py maps them.

Names come from gguf's own table (`gguf.TENSOR_NAMES`), so they are llama.cpp's by construction. Three
layout changes, each the converter's:
- GPT-2's `Conv1D` stores (in, out); GGUF wants nn.Linear's (out, in), so those four weights are transposed.
- Llama's q/k rows are in HF's rotate-half order (each head's first half of dims pairs with its second half);
  ggml's RoPE rotates adjacent pairs, so each head's rows are interleaved (`permute`). transformers' GGUF
  loader undoes exactly this.
- Mixtral's experts are stacked into one 3-D tensor per projection (`ffn_{gate,up,down}_exps`).
Every tensor of the state dict must be used and every expected one present: a leftover or a gap is an
error naming it, never a silently different model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import gguf
import torch
from torch import Tensor

from kiln.interop.gguf_errors import GGUFExportError

T = gguf.MODEL_TENSOR

# Buffers, not weights: llama.cpp's converter skips them too.
_SKIP = re.compile(r".*\.(attn\.bias|attn\.masked_bias|rotary_emb\.inv_freq)$")

_GPT2_BLOCK = {
    "ln_1": (T.ATTN_NORM, False),
    "attn.c_attn": (T.ATTN_QKV, True),
    "attn.c_proj": (T.ATTN_OUT, True),
    "ln_2": (T.FFN_NORM, False),
    "mlp.c_fc": (T.FFN_UP, True),
    "mlp.c_proj": (T.FFN_DOWN, True),
}

_LLAMA_BLOCK = {
    "input_layernorm": T.ATTN_NORM,
    "self_attn.q_proj": T.ATTN_Q,
    "self_attn.k_proj": T.ATTN_K,
    "self_attn.v_proj": T.ATTN_V,
    "self_attn.o_proj": T.ATTN_OUT,
    "post_attention_layernorm": T.FFN_NORM,
    "mlp.gate_proj": T.FFN_GATE,
    "mlp.up_proj": T.FFN_UP,
    "mlp.down_proj": T.FFN_DOWN,
}


def gguf_name(kind: gguf.MODEL_TENSOR, suffix: str = "weight", bid: int | None = None) -> str:
    base = gguf.TENSOR_NAMES[kind]
    return f"{base.format(bid=bid) if bid is not None else base}.{suffix}"


def permute(w: Tensor, n_head: int) -> Tensor:
    """Rotate-half row order -> interleaved pairs, per head (llama.cpp's LlamaModel.permute; works on biases)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class _Tensors:
    """The state dict, consumed by name: `take` fails on a gap, `check_all_used` on what nothing took."""

    def __init__(self, state_dict: Mapping[str, Tensor], prefix: str) -> None:
        self.prefix = prefix
        self.left = {k: v for k, v in state_dict.items() if not _SKIP.match(k)}

    def take(self, name: str) -> Tensor:
        full = self.prefix + name if not name.startswith("lm_head") else name
        if full not in self.left:
            raise GGUFExportError(f"state dict: tensor {full!r} is missing")
        return self.left.pop(full)

    def take_optional(self, name: str) -> Tensor | None:
        return self.take(name) if self.prefix + name in self.left else None

    def drop_tied_head(self, embedding: Tensor) -> None:
        """transformers lists a tied head under its own name too; llama.cpp reuses token_embd when `output` is
        absent, so it is dropped, but only if it really is the embedding (a config that says tied over a
        different head would export another model)."""
        head = self.left.pop("lm_head.weight", None)
        if head is not None and not torch.equal(head, embedding):
            raise GGUFExportError("config.json says tie_word_embeddings, but lm_head.weight differs from the embedding")

    def check_all_used(self, arch: str) -> None:
        if self.left:
            extra = ", ".join(sorted(self.left)[:5])
            raise GGUFExportError(f"state dict: {len(self.left)} tensor(s) a {arch} GGUF has no place for: {extra}")


def _prefix(state_dict: Mapping[str, Tensor], marker: str, prefixed: str) -> str:
    """'transformer.' / 'model.' as the *ForCausalLM state dict has it, or '' for a bare base model's."""
    return prefixed if any(k.startswith(prefixed + marker) for k in state_dict) else ""


def gpt2_tensors(config: dict[str, Any], state_dict: Mapping[str, Tensor], tied: bool) -> Iterator[tuple[str, Tensor]]:
    sd = _Tensors(state_dict, _prefix(state_dict, "wte.", "transformer."))
    embedding = sd.take("wte.weight")
    yield gguf_name(T.TOKEN_EMBD), embedding
    yield gguf_name(T.POS_EMBD), sd.take("wpe.weight")
    for i in range(config["n_layer"]):
        for hf, (kind, conv1d) in _GPT2_BLOCK.items():
            w = sd.take(f"h.{i}.{hf}.weight")
            yield gguf_name(kind, bid=i), w.T if conv1d else w
            yield gguf_name(kind, "bias", bid=i), sd.take(f"h.{i}.{hf}.bias")
    yield gguf_name(T.OUTPUT_NORM), sd.take("ln_f.weight")
    yield gguf_name(T.OUTPUT_NORM, "bias"), sd.take("ln_f.bias")
    if tied:
        sd.drop_tied_head(embedding)
    else:
        yield gguf_name(T.OUTPUT), sd.take("lm_head.weight")
    sd.check_all_used("gpt2")


def llama_tensors(config: dict[str, Any], state_dict: Mapping[str, Tensor], tied: bool) -> Iterator[tuple[str, Tensor]]:
    sd = _Tensors(state_dict, _prefix(state_dict, "embed_tokens.", "model."))
    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    embedding = sd.take("embed_tokens.weight")
    yield gguf_name(T.TOKEN_EMBD), embedding
    for i in range(config["num_hidden_layers"]):
        for hf, kind in _LLAMA_BLOCK.items():
            if hf.startswith("mlp.") and config.get("num_local_experts"):
                continue
            w = sd.take(f"layers.{i}.{hf}.weight")
            b = sd.take_optional(f"layers.{i}.{hf}.bias")
            heads = {T.ATTN_Q: n_head, T.ATTN_K: n_kv}.get(kind)
            if heads is not None:
                w, b = permute(w, heads), (permute(b, heads) if b is not None else None)
            yield gguf_name(kind, bid=i), w
            if b is not None:
                yield gguf_name(kind, "bias", bid=i), b
        if config.get("num_local_experts"):
            yield from _mixtral_experts(sd, i, config["num_local_experts"])
    yield gguf_name(T.OUTPUT_NORM), sd.take("norm.weight")
    if tied:
        sd.drop_tied_head(embedding)
    else:
        yield gguf_name(T.OUTPUT), sd.take("lm_head.weight")
    sd.check_all_used("llama")


def _mixtral_experts(sd: _Tensors, i: int, n_experts: int) -> Iterator[tuple[str, Tensor]]:
    router, gate, up, down = _take_experts(sd, i, n_experts)
    yield gguf_name(T.FFN_GATE_INP, bid=i), router
    yield gguf_name(T.FFN_GATE_EXP, bid=i), gate
    yield gguf_name(T.FFN_UP_EXP, bid=i), up
    yield gguf_name(T.FFN_DOWN_EXP, bid=i), down


def _take_experts(sd: _Tensors, i: int, n_experts: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(router [E, D], gate [E, F, D], up [E, F, D], down [E, D, F]) from either spelling of a Mixtral layer:
    transformers 5's in-memory fused one (mlp.experts.gate_up_proj [E, 2F, D], gate first;
    mlp.experts.down_proj [E, D, F]) or the checkpoint one every release saves
    (block_sparse_moe.experts.<e>.w1/w2/w3: w1 = gate, w2 = down, w3 = up)."""
    fused = f"layers.{i}.mlp.experts.gate_up_proj"
    if sd.prefix + fused in sd.left:
        gate_up = sd.take(fused)
        if gate_up.shape[0] != n_experts or gate_up.shape[1] % 2:
            raise GGUFExportError(f"state dict: {sd.prefix + fused} has shape {tuple(gate_up.shape)}")
        gate, up = gate_up.chunk(2, dim=1)
        return sd.take(f"layers.{i}.mlp.gate.weight"), gate, up, sd.take(f"layers.{i}.mlp.experts.down_proj")
    base = f"layers.{i}.block_sparse_moe"

    def stack(w: str) -> Tensor:
        return torch.stack([sd.take(f"{base}.experts.{e}.{w}.weight") for e in range(n_experts)])

    return sd.take(f"{base}.gate.weight"), stack("w1"), stack("w3"), stack("w2")
