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
    """Token ids the model embeds and predicts; `kiln train` sets it from the tokenizer."""
    vocab_multiple_of: int = 1
    """Give the embedding and LM head rows for vocab_size rounded up to a multiple of this (64 or 128 makes the
    LM head's matmul a GPU-friendly shape, as nanoGPT's 50304 for GPT-2); the padding ids are never predicted
    (their logits are cut off) and never exported. 1 = no padding."""
    block_size: int = 1024
    """Context length: the most tokens the model attends over at once."""
    n_layer: int = 12
    """Transformer blocks (depth)."""
    n_head: int = 12
    """Attention (query) heads per block; n_embd must be a multiple of it."""
    n_embd: int = 768
    """Width of the residual stream (the embedding size)."""
    n_kv_head: int | None = None
    """Key/value heads: None or n_head = multi-head; 1 = multi-query; in between = grouped-query."""
    pos_encoding: PosEncoding = "learned"
    """How the model knows token order: learned or sinusoidal absolute embeddings (GPT-2, Transformer), rope
    (rotary, Llama), alibi (linear attention biases) or none (causal masking alone)."""
    rope_theta: float = 10000.0
    """RoPE's base wavelength; larger values suit longer contexts (Llama 3 uses 500000)."""
    norm: NormKind = "layernorm"
    """layernorm (GPT-2) or rmsnorm (Llama: no mean subtraction, no bias)."""
    norm_position: NormPosition = "pre"
    """pre: normalise each block's input (GPT-2 onward, stable); post: its output, as the original Transformer."""
    norm_eps: float = 1e-5
    """Added to the variance inside the norm, so a near-zero input does not divide by zero."""
    activation: Activation = "gelu"
    """gelu is GPT-2's tanh approximation (so OpenAI's weights load exactly); swiglu is Llama's gated MLP."""
    mlp_hidden: int | None = None
    """MLP inner width; None = 4·n_embd (gelu/relu) or 8/3·n_embd rounded up to mlp_multiple_of (swiglu)."""
    mlp_multiple_of: int = 64
    """The default swiglu width is rounded up to a multiple of this (hardware-friendly matmul shapes)."""
    bias: bool = True
    """Bias vectors in linear layers and norms (GPT-2 has them; Llama drops them)."""
    dropout: float = 0.0
    """Dropout probability on the embeddings, attention weights and residual branches in training (0 = off)."""
    tie_embeddings: bool = True
    """Share the token embedding matrix with the output head (saves vocab_size x n_embd parameters)."""
    attention_window: int | None = None
    """Sliding-window (local) attention: each token sees at most this many tokens, itself included."""
    n_experts: int = 0
    """0 = dense MLP; > 0 = mixture of experts with this many MLPs per layer."""
    moe_top_k: int = 2
    """Experts each token is routed to (mixture of experts only)."""
    moe_aux_loss_coef: float = 0.01
    """Weight of the load-balancing loss that keeps the router from favouring a few experts."""
    loss_chunk_tokens: int = 0
    """Training loss over this many tokens at a time, each chunk's logits recomputed in the backward pass, so the
    (tokens x vocab) fp32 logits never exist at once (the forward then returns no logits with the loss).
    0 = one LM-head matmul and cross-entropy over every token."""
    init_std: float = 0.02
    """Standard deviation of the normal initialisation of weights and embeddings (GPT-2's 0.02); residual
    projections get it divided by sqrt(2·n_layer)."""

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def padded_vocab_size(self) -> int:
        """Rows of the embedding and LM head: vocab_size rounded up to a multiple of vocab_multiple_of."""
        m = self.vocab_multiple_of
        return m * math.ceil(self.vocab_size / m)

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
        require(self.vocab_multiple_of >= 1, f"vocab_multiple_of must be >= 1 (1 = none), got {self.vocab_multiple_of}")
        require(self.loss_chunk_tokens >= 0, f"loss_chunk_tokens must be >= 0 (0 = off), got {self.loss_chunk_tokens}")
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
