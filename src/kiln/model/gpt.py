"""`GPT`: a decoder-only transformer trained to predict the next token.

Read top to bottom: embeddings (+ positions) -> n_layer blocks of attention and MLP with residual
connections -> final norm -> LM head. Every architectural choice comes from `GPTConfig`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.model import cpu_fast
from kiln.model.attention import Attention
from kiln.model.chunked_loss import chunked_cross_entropy
from kiln.model.config import GPTConfig
from kiln.model.kv_cache import KVCache
from kiln.model.masks import attention_mask
from kiln.model.mlp import MLP, MoE
from kiln.model.positions import alibi_slopes, rope_cos_sin, sinusoidal


def segment_positions(segments: Tensor) -> Tensor:
    """(B, T) segment ids -> each token's position within its own segment (0 where a segment starts)."""
    b, t = segments.shape
    idx = torch.arange(t, device=segments.device).expand(b, t)
    starts = torch.ones_like(segments, dtype=torch.bool)
    starts[:, 1:] = segments[:, 1:] != segments[:, :-1]
    return idx - torch.where(starts, idx, 0).cummax(dim=1).values


def branch_positions(branches: Tensor) -> Tensor:
    """(B, T) branch ids (0 = the shared prompt, first in the row; -1 = padding) -> positions: the prompt's count
    from 0 and each branch's continue from the prompt's end, as if that branch followed the prompt alone; padding
    sits at 0 (a padded row may be longer than the context)."""
    trunk = (branches == 0).sum(1, keepdim=True)
    return (segment_positions(branches) + torch.where(branches > 0, trunk, 0)).masked_fill(branches < 0, 0)


def bucket_rows(n: int) -> int:
    """n rounded up to a multiple of 2^max(6, bits(n) - 4): under 64 rows more, or under an eighth more past
    1,024 (eight sizes between one power of two and the next), so a kernel built for a size is reused."""
    return bucket_length(n, smallest=64)


def bucket_length(n: int, smallest: int = 16) -> int:
    """n rounded up to a multiple of max(smallest, 2^(bits(n) - 4)): under `smallest` more, or under an eighth
    more past 16 x smallest (eight lengths between one power of two and the next); bucketing a bucket returns it."""
    step = max(smallest, 1 << max(0, n.bit_length() - 4))
    return -(-n // step) * step


def prefill_width(model: nn.Module, longest: int, limit: int) -> int:
    """How wide to left-pad a prefill whose longest prompt has `longest` tokens: bucket_length(longest) for a
    bf16 model on the CPU (each new prompt length would build new oneDNN kernels for every layer, and a server
    sees every length), unless that passes `limit` (the room the cache has for it); else `longest`."""
    w = model.lm_head.weight
    if getattr(model, "bucket_shapes", False) and bf16_on_cpu(w, w) and bucket_length(longest) <= limit:
        return bucket_length(longest)
    return longest


def bf16_on_cpu(x: Tensor, weight: Tensor) -> bool:
    """Whether `x` (on its device) meets `weight` in a bf16 matmul on the CPU (autocast, or bf16 weights):
    oneDNN's path, which builds a kernel per new shape."""
    if x.device.type != "cpu":
        return False
    return weight.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )


def make_norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


def cache_dtype(p: Tensor) -> torch.dtype:
    """The KV cache's dtype for a model whose weights are like `p`: its own, except bf16 on a CPU that attends
    faster in fp32 (`cpu_fast.fp32_attention_faster`, timed once), where keys and values are kept in fp32 and
    decoding attends in fp32 (`Attention.forward` lifts the query to match).

    Why: PyTorch's CPU attention can be several times slower in bf16 than in fp32 at one query a row. Measured on
    a 2-core Zen 4 EPYC (torch 2.13.0, AVX512-BF16), gpt2's 12 heads of 64, one query against L cached keys, per
    call: batch 1, L 96: 74-86 us in bf16 against 32 us on an fp32 cache; batch 8, L 96: 497 against 139; batch 8,
    L 1024: 5.7 ms against 1.5; batch 32, L 1024: 23.7 ms against 8.0 (lifting a bf16 cache to fp32 every step
    cost more than it saved past a few hundred keys). The cache holds twice the bytes (the server's memory
    estimate already counts 4 bytes a value), and attention is more exact, not less."""
    if p.device.type == "cpu" and p.dtype == torch.bfloat16 and cpu_fast.fp32_attention_faster():
        return torch.float32
    return p.dtype


class Block(nn.Module):
    """Attention then MLP, each wrapped in a residual connection; the norm goes before each sublayer
    (pre-norm, GPT-2 onwards: stable without warmup tricks) or after the residual sum (post-norm, the
    original Transformer)."""

    def __init__(self, cfg: GPTConfig, layer: int) -> None:
        super().__init__()
        self.pre_norm = cfg.norm_position == "pre"
        self.norm1 = make_norm(cfg)
        self.attn = Attention(cfg, layer)
        self.norm2 = make_norm(cfg)
        self.mlp = MoE(cfg) if cfg.n_experts else MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, **attn_kwargs) -> Tensor:
        if self.pre_norm:
            x = x + self.drop(self.attn(self.norm1(x), **attn_kwargs))
            return x + self.drop(self.mlp(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, **attn_kwargs)))
        return self.norm2(x + self.drop(self.mlp(x)))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = cfg = config.validate()
        # On the meta device (sizing a model) the tables are given, not drawn: PyTorch's first normal_ on a meta
        # tensor imports its Python decompositions (1-6 s), and there are no values to draw anyway.
        meta = torch.empty(0).device.type == "meta"
        rows = cfg.padded_vocab_size  # vocab_size, or more with vocab_multiple_of (rows no token id reaches)
        self.wte = nn.Embedding(rows, cfg.n_embd, _weight=torch.empty(rows, cfg.n_embd) if meta else None)
        self.wpe = (
            nn.Embedding(cfg.block_size, cfg.n_embd, _weight=torch.empty(cfg.block_size, cfg.n_embd) if meta else None)
            if cfg.pos_encoding == "learned"
            else None
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm_f = make_norm(cfg) if cfg.norm_position == "pre" else nn.Identity()
        self.lm_head = nn.Linear(cfg.n_embd, rows, bias=False)
        if cfg.tie_embeddings:
            # One matrix both reads tokens in and scores them out (Press & Wolf 2017): fewer parameters,
            # and GPT-2's 124M count assumes it.
            self.lm_head.weight = self.wte.weight
        self.last_aux_loss: Tensor | None = None
        # Under bf16 on the CPU, pad batches to a few shapes so oneDNN reuses its kernels (`bucket_length`,
        # `bucket_rows`); off only to measure what that saves (benchmarks/bf16_width_buckets.py).
        self.bucket_shapes = True
        if not meta:  # a meta tensor has no values to draw: skipping the init makes sizing a 405B model ~10x faster
            self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """GPT-2 initialisation: N(0, 0.02) everywhere, and residual projections scaled by 1/sqrt(2·n_layer)
        so the residual stream's variance does not grow with depth."""
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            scale = 1 / math.sqrt(2 * self.config.n_layer) if getattr(module, "residual", False) else 1.0
            nn.init.normal_(module.weight, mean=0.0, std=std * scale)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        valid: Tensor | None = None,
        prefix_len: int | Tensor | None = None,
        segments: Tensor | None = None,
        branches: Tensor | None = None,
        all_logits: bool = False,
        return_hidden: bool = False,
        logits_at: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) token ids -> (logits, loss).

        With `targets` (B, T) (the inputs shifted left by one, -1 = ignore), logits cover every position
        and loss is the mean cross-entropy (plus moe_aux_loss_coef × the load-balancing term for MoE); with
        loss_chunk_tokens the loss is computed in chunks and logits is None (they are never built whole).
        Logits always have vocab_size columns: the padding rows of vocab_multiple_of are cut off.
        Without targets only the last position goes through the LM head (all a sampler needs) unless
        `all_logits`. `cache` makes this an incremental step; `valid` (B, T) marks left padding as False;
        `prefix_len` makes the first tokens of each sequence attend to each other both ways. `segments` (B, T)
        packs several documents into one row: a token attends only within its own segment id, and positions
        restart at 0 where a segment starts, so each document computes what it would alone. `branches` (B, T) holds
        one prompt (id 0, first) and several continuations of it (ids 1, 2, ...; -1 = padding) in one row: each
        continuation attends to the prompt and to itself, at the positions it would have right after the prompt, so
        the prompt is computed once for all of them (DPO's chosen and rejected replies). `logits_at` is a (B, T)
        boolean mask or (N,) indices into the flattened B * T positions (one position may be scored twice).
        """
        cfg = self.config
        b, t = idx.shape
        scoring = targets is not None or logits_at is not None or return_hidden or all_logits
        if scoring and cache is None and valid is None and prefix_len is None and not cfg.n_experts:
            # A bf16 matmul on the CPU runs through oneDNN, which compiles and keeps a kernel (tens of MB) for
            # every new shape; fine-tuning batches are as wide as their longest row, a new width almost every
            # step, so every layer built new kernels: a run grew by ~30 MB a step and slowed (docs/benchmarks.md).
            # Right padding to one of a few widths reuses them and changes nothing before it (attention is
            # causal; padding is ignored by the loss and cut off the outputs). MoE is left alone: its router's
            # load-balancing term would count the padding.
            width = bucket_length(t) if branches is not None else min(bucket_length(t), max(t, cfg.block_size))
            if width > t and self.bucket_shapes and bf16_on_cpu(idx, self.wte.weight):
                return self._forward_padded(idx, targets, width, segments, branches, all_logits, return_hidden,
                                            logits_at)  # fmt: skip
        offset = cache.length if cache is not None else 0
        if cache is None and branches is None and t > cfg.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than block_size {cfg.block_size}")
        if valid is not None and bool(valid.all()):
            valid = None

        # Positions: a token's index within its own sequence (padding does not count).
        padded = valid is not None or (cache is not None and cache.padded)
        if segments is not None or branches is not None:
            if cache is not None or valid is not None or (segments is not None and branches is not None):
                raise ValueError(
                    "segments (packed documents) and branches (a shared prompt) are for training and scoring: "
                    "no cache, no padding, one of the two"
                )
            positions = segment_positions(segments) if segments is not None else branch_positions(branches)
            if branches is not None and (top := int(positions.max())) >= cfg.block_size:  # the row may be longer
                raise ValueError(f"a branch reaches position {top}, past block_size {cfg.block_size}")
            padded = True  # positions are not arange: take the general paths below
        elif not padded:
            positions = torch.arange(offset, offset + t, device=idx.device).expand(b, t)
        else:
            v = torch.ones_like(idx, dtype=torch.bool) if valid is None else valid
            base = cache.n_valid[:, None] if cache is not None else 0
            positions = (base + v.long().cumsum(1) - 1).clamp(min=0)
        if cache is not None:
            cache.begin(positions, valid)

        x = self.wte(idx)
        if cfg.pos_encoding == "learned":
            # Without padding the last position is known on the host: no device sync (and no graph break
            # under torch.compile) on the training path.
            last = int(positions.max()) if padded else offset + t - 1
            if last >= cfg.block_size:
                raise ValueError(f"position {last} is past block_size {cfg.block_size}")
            x = x + self.wpe(positions)
        elif cfg.pos_encoding == "sinusoidal":
            x = x + sinusoidal(positions, cfg.n_embd).to(x.dtype)
        x = self.drop(x)
        rope = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta) if cfg.pos_encoding == "rope" else None

        mask, is_causal = self._mask(positions, valid, cache, offset, t, prefix_len, x.dtype, segments, branches)
        for block in self.blocks:
            x = block(x, rope=rope, mask=mask, is_causal=is_causal, cache=cache)
        if cache is not None:
            cache.advance(t)
        x = self.norm_f(x)
        if return_hidden:  # the final hidden states (B, T, n_embd), for heads other than the LM head (rewards)
            return x, None
        if logits_at is not None:
            # (N, vocab) logits only where the (B, T) mask is True: fine-tuning losses read a reply's tokens, and
            # the LM head (the widest matmul of a small model) then runs on those alone, not on the prompt.
            at = x[logits_at] if logits_at.dtype == torch.bool else x.reshape(b * t, -1)[logits_at]
            n = at.shape[0]
            if self.bucket_shapes and bf16_on_cpu(at, self.lm_head.weight):
                # A bf16 matmul on the CPU runs through oneDNN, which compiles and keeps a new kernel (tens of
                # MB, docs/benchmarks.md) for every new row count; the rows scored vary from batch to batch, so
                # a long fine-tuning run grew by gigabytes and slowed down. Padded to one of a few sizes, the
                # head reuses its kernels; the zero rows cost at most an eighth more and are cut off.
                at = F.pad(at, (0, 0, 0, bucket_rows(n) - n))
                return self.logits(at)[:n], None
            return self.logits(at), None

        if targets is None:
            return self.logits(x if all_logits else x[:, -1:, :]), None
        if cfg.loss_chunk_tokens:
            logits = None
            loss = chunked_cross_entropy(x, self.lm_head.weight, targets, cfg.loss_chunk_tokens, cfg.vocab_size)
        else:
            logits = self.logits(x)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        if cfg.n_experts:
            self.last_aux_loss = torch.stack([blk.mlp.aux_loss for blk in self.blocks]).mean()
            loss = loss + cfg.moe_aux_loss_coef * self.last_aux_loss
        return logits, loss

    def _forward_padded(
        self,
        idx: Tensor,
        targets: Tensor | None,
        width: int,
        segments: Tensor | None,
        branches: Tensor | None,
        all_logits: bool,
        return_hidden: bool,
        logits_at: Tensor | None,
    ) -> tuple[Tensor, Tensor | None]:
        """forward() on rows right-padded to `width` (token 0; segment, branch and target -1: padding), with
        the outputs of the real positions only."""
        t = idx.shape[1]
        pad = width - t
        if logits_at is not None and logits_at.dtype != torch.bool:  # flat indices into (B, t) -> into (B, width)
            logits_at = logits_at // t * width + logits_at % t
        elif logits_at is not None:
            logits_at = F.pad(logits_at, (0, pad))
        out, loss = GPT.forward(  # not self(): no hooks run twice, and subclasses (RewardModel) take other args
            self,
            F.pad(idx, (0, pad)),
            None if targets is None else F.pad(targets, (0, pad), value=-1),
            segments=None if segments is None else F.pad(segments, (0, pad), value=-1),
            branches=None if branches is None else F.pad(branches, (0, pad), value=-1),
            all_logits=all_logits,
            return_hidden=return_hidden,
            logits_at=logits_at,
        )
        if out is not None and logits_at is None:  # (B, width, ...) -> the real positions
            out = out[:, :t]
        return out, loss

    def logits(self, x: Tensor) -> Tensor:
        """The LM head on final hidden states: (..., n_embd) -> (..., vocab_size) scores of the real ids only.

        With vocab padding the extra columns are sliced off (a view, no copy), so sampling, log-probabilities
        and losses see exactly the distribution of an unpadded model with the same real rows."""
        out = self.lm_head(x)
        return out if out.shape[-1] == self.config.vocab_size else out[..., : self.config.vocab_size]

    def _mask(
        self,
        positions: Tensor,
        valid: Tensor | None,
        cache: KVCache | None,
        offset: int,
        t: int,
        prefix_len: int | Tensor | None,
        dtype: torch.dtype,
        segments: Tensor | None = None,
        branches: Tensor | None = None,
    ) -> tuple[Tensor | None, bool]:
        """The cheapest correct attention mask: none at all (SDPA's own causal flag, which lets it pick
        the flash kernel) for plain training and single-token decoding, an explicit one otherwise."""
        cfg = self.config
        plain = (
            valid is None
            and (cache is None or not cache.padded)
            and cfg.attention_window is None
            and prefix_len is None
            and segments is None
            and branches is None
            and cfg.pos_encoding != "alibi"
        )
        if plain and offset == 0:
            return None, t > 1
        if plain and t == 1:
            return None, False
        device = positions.device
        q_slots = torch.arange(offset, offset + t, device=device)
        k_slots = torch.arange(offset + t, device=device)
        if cache is not None:
            k_pos, k_valid = cache.pos[:, : offset + t], cache.valid[:, : offset + t]
        else:
            k_pos, k_valid = positions, valid
        mask = attention_mask(
            q_slots,
            k_slots,
            positions,
            k_pos,
            k_valid,
            window=cfg.attention_window,
            prefix_len=prefix_len,
            segments=segments,
            branches=branches,
            alibi_slopes=alibi_slopes(cfg.n_head) if cfg.pos_encoding == "alibi" else None,
            dtype=dtype,
        )
        return mask, False

    # ------------------------------------------------------------------ inference helpers
    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache on this model's device, for up to `max_len` (default block_size) tokens, in the
        model's dtype except for a bf16 model on a CPU that attends faster in fp32, whose cache is fp32
        (`cache_dtype`)."""
        cfg = self.config
        p = self.lm_head.weight
        return KVCache(
            cfg.n_layer,
            batch_size,
            cfg.kv_heads,
            max_len or cfg.block_size,
            cfg.head_dim,
            device=p.device,
            dtype=cache_dtype(p),
        )

    # ------------------------------------------------------------------ accounting
    def num_params(self, non_embedding: bool = False) -> int:
        """Unique parameters (a tied matrix counts once). non_embedding drops the token and position
        tables, as Kaplan et al.'s scaling laws count N; an untied LM head is a matmul and stays."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wte.weight.numel()
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
        return n

    def active_matmul_params(self) -> int:
        """Parameters a token multiplies through: everything but the lookup tables (the tied LM head
        is a matmul and counts), and for MoE only moe_top_k of n_experts experts."""
        cfg = self.config
        n = self.num_params()
        if self.wpe is not None:
            n -= self.wpe.weight.numel()
        if not cfg.tie_embeddings:
            n -= self.wte.weight.numel()
        if cfg.n_experts:
            per_expert = sum(p.numel() for p in self.blocks[0].mlp.experts[0].parameters())
            n -= cfg.n_layer * (cfg.n_experts - cfg.moe_top_k) * per_expert
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token, 6N + 12·L·H·Q·T (PaLM appendix B), for MFU: 6N for the forward and
        backward matmuls through N weights, 12·L·H·Q·T for attention scores over T keys."""
        cfg = self.config
        t = seq_len or cfg.block_size
        return 6 * self.active_matmul_params() + 12 * cfg.n_layer * cfg.n_head * cfg.head_dim * t

    def memory_report(
        self,
        *,
        dtype: torch.dtype = torch.bfloat16,
        batch_size: int = 1,
        seq_len: int | None = None,
    ) -> dict[str, int]:
        """Bytes needed, computable on the meta device: weights, gradients, AdamW's two fp32 moments,
        an fp32 master copy under mixed precision, and the KV cache for `batch_size` × `seq_len` tokens.
        Activations are left out: they depend on batch, checkpointing and kernels."""
        cfg = self.config
        n = self.num_params()
        width = torch.finfo(dtype).bits // 8
        t = seq_len or cfg.block_size
        report = {
            "params": n,
            "weights": n * width,
            "gradients": n * width,
            "adamw_states": n * 8,
            "fp32_master": 0 if dtype == torch.float32 else n * 4,
            "kv_cache": 2 * cfg.n_layer * cfg.kv_heads * cfg.head_dim * t * batch_size * width,
        }
        report["training_total"] = (
            report["weights"] + report["gradients"] + report["adamw_states"] + report["fp32_master"]
        )
        report["inference_total"] = report["weights"] + report["kv_cache"]
        return report
