"""Memory per device against hand arithmetic, and FLOPs per token against 6N + the attention term."""

from __future__ import annotations

import pytest

from kiln.model.presets import preset
from kiln.plan.memory import ModelCounts, activation_bytes_per_token_layer, device_memory, min_gpus

KW = dict(micro_batch=1, checkpointing=False)


@pytest.fixture(scope="module")
def llama405() -> ModelCounts:
    return ModelCounts.of(preset("llama3-405b"))


def test_counts_match_a_full_meta_build(llama405: ModelCounts) -> None:
    """ModelCounts extrapolates from 1- and 2-layer builds; the full 126-layer build must agree exactly."""
    from kiln.model.presets import build

    for name in ("gpt2", "llama3-405b", "moe-small", "tiny-llama"):
        counts = llama405 if name == "llama3-405b" else ModelCounts.of(preset(name))
        model = build(name, device="meta")
        assert counts.params == model.num_params()
        assert counts.non_embedding == model.num_params(non_embedding=True)
        assert counts.flops_per_token == model.flops_per_token()


def test_405b_fp32_weights_are_1_6_tb_and_adam_states_8_bytes_per_parameter(llama405: ModelCounts) -> None:
    m = device_memory(llama405, precision="fp32", zero=0, tp=1, dp=1, seq_len=8192, **KW)
    assert m.weights == 4 * llama405.params
    assert m.weights / 1e12 == pytest.approx(1.6, abs=0.05)  # "405B x 4 bytes = 1.6 TB"
    assert m.optimizer == 8 * llama405.params  # Adam's m and v in fp32; the fp32 weights are their own master
    bf16 = device_memory(llama405, precision="bf16", zero=0, tp=1, dp=1, seq_len=8192, **KW)
    assert (bf16.weights, bf16.gradients, bf16.optimizer) == (
        2 * llama405.params,
        2 * llama405.params,
        12 * llama405.params,
    )  # ZeRO paper's 2 + 2 + 12


@pytest.mark.parametrize("dp", [2, 8, 64])
def test_zero_stages_divide_what_they_shard_by_the_degree(llama405: ModelCounts, dp: int) -> None:
    kw = dict(precision="bf16", tp=1, seq_len=8192, **KW)
    ddp = device_memory(llama405, zero=0, dp=dp, **kw)
    z1 = device_memory(llama405, zero=1, dp=dp, **kw)
    z2 = device_memory(llama405, zero=2, dp=dp, **kw)
    z3 = device_memory(llama405, zero=3, dp=dp, **kw)
    assert (z1.weights, z1.gradients, z1.optimizer) == (ddp.weights, ddp.gradients, ddp.optimizer / dp)
    assert (z2.weights, z2.gradients, z2.optimizer) == (ddp.weights, ddp.gradients / dp, ddp.optimizer / dp)
    gathered = 2 * llama405.block_params * 2  # two bf16 blocks gathered at a time
    assert z3.weights == pytest.approx(ddp.weights / dp + gathered)
    assert (z3.gradients, z3.optimizer) == (ddp.gradients / dp, ddp.optimizer / dp)
    assert z3.activations == ddp.activations  # data parallelism never shards activations


def test_korthikanti_34_sbh_for_a_gpt_layer_with_dropout() -> None:
    """Korthikanti et al. 2022 eq. 1: sbh(34 + 5as/h) bytes per layer for a GPT layer (4h MLP, dropout)."""
    cfg = preset("gpt3-175b", dropout=0.1)
    s, h, a = cfg.block_size, cfg.n_embd, cfg.n_head
    assert activation_bytes_per_token_layer(cfg, "bf16", s, flash=True) == 34 * h
    assert activation_bytes_per_token_layer(cfg, "bf16", s, flash=False) == pytest.approx(h * (34 + 5 * a * s / h))
    # full recomputation keeps 2sbh per layer (Korthikanti §4.2) plus one layer being recomputed
    counts = ModelCounts.of(cfg)
    kw = dict(precision="bf16", zero=0, tp=1, dp=1, micro_batch=1, seq_len=s, flash=True)
    full = device_memory(counts, checkpointing=False, **kw).activations
    ckpt = device_memory(counts, checkpointing=True, **kw).activations
    head = (4 * cfg.vocab_size + 2 * h) * s
    assert full == pytest.approx(cfg.n_layer * 34 * s * h + head)
    assert ckpt == pytest.approx(cfg.n_layer * 2 * s * h + 34 * s * h + head)


def test_tensor_parallel_divides_states_and_activations(llama405: ModelCounts) -> None:
    kw = dict(precision="bf16", zero=0, dp=1, seq_len=8192, **KW)
    one, eight = device_memory(llama405, tp=1, **kw), device_memory(llama405, tp=8, **kw)
    assert eight.total == pytest.approx(one.total / 8)


def test_min_gpus_is_the_fewest_that_fit(llama405: ModelCounts) -> None:
    cap = 80e9 * 0.9
    kw = dict(precision="bf16", micro_batch=1, seq_len=8192, checkpointing=True)
    n = min_gpus(llama405, cap, zero=3, tp=8, **kw)
    assert n is not None and n % 8 == 0
    assert device_memory(llama405, zero=3, tp=8, dp=n // 8, **kw).total <= cap
    assert device_memory(llama405, zero=3, tp=8, dp=n // 8 - 1, **kw).total > cap
    assert min_gpus(llama405, cap, zero=0, tp=1, **kw) is None  # DDP replicates 6.5 TB of states


@pytest.mark.parametrize("name", ["gpt2", "gpt2-xl", "llama3-8b", "llama3-405b"])
def test_flops_per_token_is_6n_plus_the_attention_term(name: str) -> None:
    """PaLM's 6N + 12·L·H·Q·T with N the matmul parameters (the position table is a lookup; a tied head is a
    matmul), computed here from the shape alone."""
    cfg = preset(name)
    h, L, T, V, f = cfg.n_embd, cfg.n_layer, cfg.block_size, cfg.vocab_size, cfg.hidden_dim
    kv = cfg.kv_heads * cfg.head_dim
    mlp = (3 if cfg.activation == "swiglu" else 2) * h * f
    attn = h * (h + 2 * kv) + h * h
    biases = (h + 2 * kv + h + f + h) if cfg.bias else 0
    norm = 2 * h if cfg.norm == "layernorm" else h  # gain (+ bias for LayerNorm)
    n_matmul = L * (attn + mlp + biases + 2 * norm) + norm + V * h  # blocks, the final norm, the LM head
    expected = 6 * n_matmul + 12 * L * cfg.n_head * cfg.head_dim * T
    assert ModelCounts.of(cfg).flops_per_token == expected
    # the attention term is what separates kiln's count from 6N: 12·L·h·T, since heads x head_dim = h
    assert expected - 6 * n_matmul == 12 * L * h * T
