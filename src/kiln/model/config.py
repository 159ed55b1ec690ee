"""`GPTConfig`: one dataclass that describes every decoder-only transformer kiln can build.

GPT-2, Llama, Mistral-style sliding windows and Mixtral-style MoE differ only in a handful of choices
(position encoding, norm, activation, kv-heads, bias, tying, experts), so one config with those knobs
covers the whole family and lets a learner flip one choice at a time and see what it does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from kiln.utils.checks import require

PosEncoding = Literal["learned", "sinusoidal", "rope", "alibi", "none"]
NormKind = Literal["layernorm", "rmsnorm"]
NormPosition = Literal["pre", "post"]
Activation = Literal["gelu", "relu", "swiglu"]


@dataclass
class GPTConfig:
    """Shape and architecture of a decoder-only transformer.

    Defaults are GPT-2 small (124M); `kiln.model.preset(name)` gives the named shapes.
    """

    vocab_size: int = 50257
    block_size: int = 1024
    """Context length: the most tokens the model attends over at once."""
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_kv_head: int | None = None
    """Key/value heads: None or n_head = multi-head; 1 = multi-query; in between = grouped-query."""
    pos_encoding: PosEncoding = "learned"
    rope_theta: float = 10000.0
    norm: NormKind = "layernorm"
    norm_position: NormPosition = "pre"
    norm_eps: float = 1e-5
    activation: Activation = "gelu"
    """gelu is GPT-2's tanh approximation (so OpenAI's weights load exactly); swiglu is Llama's gated MLP."""
    mlp_hidden: int | None = None
    """MLP inner width; None = 4·n_embd (gelu/relu) or 8/3·n_embd rounded up to mlp_multiple_of (swiglu)."""
    mlp_multiple_of: int = 64
    bias: bool = True
    dropout: float = 0.0
    tie_embeddings: bool = True
    attention_window: int | None = None
    """Sliding-window (local) attention: each token sees at most this many tokens, itself included."""
    n_experts: int = 0
    """0 = dense MLP; > 0 = mixture of experts with this many MLPs per layer."""
    moe_top_k: int = 2
    moe_aux_loss_coef: float = 0.01
    init_std: float = 0.02

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def hidden_dim(self) -> int:
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        if self.activation == "swiglu":
            # Llama keeps the gated MLP's parameter count equal to a 4x MLP: 2/3 of 4·d per matrix.
            m = self.mlp_multiple_of
            return m * math.ceil(int(8 * self.n_embd / 3) / m)
        return 4 * self.n_embd

    def validate(self) -> GPTConfig:
        """Reject impossible shapes early, with the field name, instead of a cryptic matmul error later."""

        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(
            self.n_embd % self.n_head == 0,
            f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})",
        )
        require(
            1 <= self.kv_heads <= self.n_head,
            f"n_kv_head must be in [1, n_head={self.n_head}], got {self.kv_heads}",
        )
        require(
            self.n_head % self.kv_heads == 0,
            f"n_head ({self.n_head}) must be divisible by n_kv_head ({self.kv_heads})",
        )
        if self.pos_encoding == "rope":
            require(self.head_dim % 2 == 0, f"rope needs an even head_dim, got {self.head_dim}")
        if self.pos_encoding == "sinusoidal":
            require(self.n_embd % 2 == 0, f"sinusoidal positions need an even n_embd, got {self.n_embd}")
        require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        require(self.norm_eps > 0, f"norm_eps must be > 0, got {self.norm_eps}")
        require(self.hidden_dim >= 1, f"mlp_hidden must be >= 1, got {self.hidden_dim}")
        if self.attention_window is not None:
            require(self.attention_window >= 1, f"attention_window must be >= 1, got {self.attention_window}")
        require(self.n_experts >= 0, f"n_experts must be >= 0 (0 = dense), got {self.n_experts}")
        if self.n_experts:
            require(
                1 <= self.moe_top_k <= self.n_experts,
                f"moe_top_k must be in [1, n_experts={self.n_experts}], got {self.moe_top_k}",
            )
        return self
