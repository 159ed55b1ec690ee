"""Memory per device for training one model: weights, gradients, optimizer states and activations, under
data parallelism (DDP, ZeRO-1/2/3 = FSDP) and tensor parallelism, at fp32, bf16 mixed precision or fp8.

Model states, bytes per parameter (Rajbhandari et al. 2020, "ZeRO", §3: mixed-precision Adam is 2 + 2 + 12):

    precision  weights  gradients  optimizer (fp32 master + Adam m, v)
    fp32       4        4          8   (the weights are the master copy)
    bf16       2        2          12
    fp8        2        2          12  (fp8 matmuls on bf16 weights, as Transformer Engine and torchao's float8
                                        training do: the states are bf16-mixed's; fp8 saves activations, time)

ZeRO-1 shards the optimizer states over the data-parallel degree, ZeRO-2 the gradients too, ZeRO-3 (= FSDP's
full sharding) the weights too; FSDP/ZeRO-3 also holds two gathered blocks at once (the one computing and the
one prefetched). Tensor parallelism (Megatron, Shoeybi et al. 2019) shards every matrix over `tp` devices, and
with sequence parallelism (Korthikanti et al. 2022) the activations too; pipeline parallelism is not modelled.

Activations saved for the backward pass, per transformer layer and token, follow Korthikanti et al. 2022,
"Reducing Activation Recomputation in Large Transformer Models", §4.1 eq. 1: sbh(34 + 5as/h) bytes in 16-bit
for a GPT layer, here itemised so that it holds for kiln's other shapes (grouped-query K/V, SwiGLU's three
h×f activations, no dropout masks when dropout = 0): two norm inputs, the QKV input, Q, K, V, the attention
output, the MLP input and its hidden activations, one byte per dropout mask. The 5as term (the s×s scores)
vanishes with FlashAttention / PyTorch SDPA, which recompute them; `flash=False` puts it back. Full activation
checkpointing keeps each layer's input (2sbh, Korthikanti §4.2) and recomputes one layer at a time in backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kiln.model import GPTConfig

PRECISIONS = ("fp32", "bf16", "fp8")
STRATEGIES = {0: "DDP", 1: "ZeRO-1", 2: "ZeRO-2", 3: "FSDP/ZeRO-3"}

# bytes per parameter: (weights, gradients, optimizer states incl. the fp32 master copy)
STATE_BYTES = {"fp32": (4, 4, 8), "bf16": (2, 2, 12), "fp8": (2, 2, 12)}
# bytes per saved activation element; under fp8 the matmul inputs are saved as fp8 (1 byte), the rest in bf16
ACT_BYTES = {"fp32": 4, "bf16": 2, "fp8": 2}


@dataclass(frozen=True)
class ModelCounts:
    """What memory and time need of a model, counted once on the meta device by kiln.model."""

    config: GPTConfig
    params: int
    non_embedding: int
    block_params: int
    """Parameters of one transformer block (what FSDP gathers at a time)."""
    flops_per_token: int
    """Training FLOPs per token at the model's context (kiln.model.GPT.flops_per_token)."""

    @classmethod
    def of(cls, config: GPTConfig, seq_len: int | None = None) -> ModelCounts:
        """Counted by kiln.model on the meta device, on one- and two-layer builds of the same shape: every block
        is identical, so each count is exactly a + b·n_layer and a 405B model is sized in milliseconds."""
        from dataclasses import replace

        from kiln.model.presets import build

        def count(n_layer: int) -> tuple[int, int, int, int]:
            m = build(replace(config, n_layer=n_layer), device="meta")
            block = sum(p.numel() for p in m.blocks[0].parameters())
            return m.num_params(), m.num_params(non_embedding=True), block, m.flops_per_token(seq_len)

        one, two = count(1), count(2)
        at = [a + (b - a) * (config.n_layer - 1) for a, b in zip(one, two, strict=True)]
        return cls(config, at[0], at[1], one[2], at[3])


def activation_bytes_per_token_layer(cfg: GPTConfig, precision: str, seq_len: int, flash: bool = True) -> float:
    """Bytes one layer saves for backward per token (Korthikanti et al. 2022 eq. 1, itemised; module docstring)."""
    e = ACT_BYTES[precision]
    mm = 1 if precision == "fp8" else e  # matmul inputs
    h, f, kv = cfg.n_embd, cfg.hidden_dim, cfg.kv_heads * cfg.head_dim
    mask = 1 if cfg.dropout > 0 else 0
    norms = 2 * e * h
    attention = mm * h + e * h + 2 * e * kv + mm * h + mask * h  # QKV input, Q, K+V, out-proj input, dropout mask
    # MLP: its input, then SwiGLU's gate and up outputs and their product (down's input), or GELU's fc1 output and
    # activation output (fc2's input), and a dropout mask.
    hidden = 2 * e * f + mm * f if cfg.activation == "swiglu" else e * f + mm * f
    mlp = mm * h + hidden + mask * h
    scores = 0.0 if flash else cfg.n_head * seq_len * (e + mask + (e if mask else 0))  # softmax, mask, dropout out
    return norms + attention + mlp + scores


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes on one device."""

    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations


def device_memory(counts: ModelCounts, *, precision: str, zero: int, tp: int, dp: float, micro_batch: int,
                  seq_len: int, checkpointing: bool, flash: bool = True) -> DeviceMemory:  # fmt: skip
    """Memory per device with `tp`-way tensor and `dp`-way data parallelism (dp may be math.inf: the part that
    no degree of sharding removes)."""
    cfg = counts.config
    wb, gb, ob = STATE_BYTES[precision]
    p = counts.params / tp
    weights = p * wb / (dp if zero >= 3 else 1)
    if zero >= 3 and dp > 1:
        weights += 2 * counts.block_params * wb / tp  # the gathered block computing + the one prefetched
    gradients = p * gb / (dp if zero >= 2 else 1)
    optimizer = p * ob / (dp if zero >= 1 else 1)
    tokens = micro_batch * seq_len
    layer = activation_bytes_per_token_layer(cfg, precision, seq_len, flash) * tokens
    # Checkpointing keeps each layer's input and recomputes one layer at a time; otherwise every layer keeps all.
    saved = cfg.n_layer * ACT_BYTES[precision] * cfg.n_embd * tokens + layer if checkpointing else cfg.n_layer * layer
    # fp32 logits for the loss (one chunk of them with loss_chunk_tokens), and the final norm's output.
    logit_tokens = min(tokens, cfg.loss_chunk_tokens) if cfg.loss_chunk_tokens else tokens
    head = 4 * cfg.padded_vocab_size * logit_tokens + ACT_BYTES[precision] * cfg.n_embd * tokens
    return DeviceMemory(weights, gradients, optimizer, (saved + head) / tp)


def min_gpus(counts: ModelCounts, capacity: float, *, zero: int, tp: int, **kw) -> int | None:
    """The fewest GPUs (a multiple of `tp`) on which the model trains within `capacity` bytes each, or None if no
    number of them does (what sharding cannot divide is already too big, or DDP shards nothing)."""
    floor = device_memory(counts, zero=zero, tp=tp, dp=math.inf, **kw).total
    if zero == 0:
        return tp if device_memory(counts, zero=0, tp=tp, dp=1, **kw).total <= capacity else None
    if floor >= capacity:
        return None
    sharded = device_memory(counts, zero=zero, tp=tp, dp=1, **kw).total - floor
    dp = max(1, math.ceil(sharded / (capacity - floor)))
    while device_memory(counts, zero=zero, tp=tp, dp=dp, **kw).total > capacity:  # the gather buffer at dp > 1
        dp += 1
    return tp * dp
