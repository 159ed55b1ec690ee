"""Tests for kiln.model's presets and accounting, initialisation, config validation and the packed CPU
inference path."""

from __future__ import annotations

import math
import time

import pytest
import torch

from kiln.model import GPT, GPTConfig, build, cpu_fast, preset, preset_names

# --------------------------------------------------------------------------------------------- presets & accounting


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt2", 124_439_808),
        ("gpt2-medium", 354_823_168),
        ("llama3-8b", 8_030_261_248),
        ("llama3-70b", 70_553_706_496),
        ("llama3-405b", 405_853_388_800),
    ],
)
def test_preset_parameter_counts(name, expected):
    model = build(name, device="meta")
    assert model.lm_head.weight.device.type == "meta"
    assert model.num_params() == expected


def test_gpt3_is_175b_within_one_percent():
    assert build("gpt3-175b", device="meta").num_params() == pytest.approx(175e9, rel=0.01)


def test_llama_small_shape():
    cfg = preset("llama-small")
    assert (cfg.pos_encoding, cfg.norm, cfg.activation) == ("rope", "rmsnorm", "swiglu")
    assert cfg.tie_embeddings is False and cfg.bias is False
    assert 1 < cfg.kv_heads < cfg.n_head
    model = build("llama-small", device="meta")
    assert model.lm_head.weight is not model.wte.weight
    assert isinstance(model.norm_f, torch.nn.RMSNorm)
    assert model.blocks[0].attn.qkv.bias is None


def test_preset_overrides_and_unknown_name():
    assert preset("tiny", vocab_size=65).vocab_size == 65
    with pytest.raises(ValueError, match="n_head"):
        preset("tiny", n_head=3)
    with pytest.raises(ValueError, match="unknown model preset") as e:
        preset("gpt5")
    for name in preset_names():
        assert name in str(e.value)
    assert {"gpt2", "llama3-405b", "tiny"} <= set(preset_names())


def test_405b_builds_on_meta_quickly_and_sizes_training_memory():
    start = time.perf_counter()
    model = build("llama3-405b", device="meta")
    assert time.perf_counter() - start < 5.0
    n = model.num_params()
    report = model.memory_report()
    assert report["training_total"] > 4e12
    # bf16 weights + bf16 grads + two fp32 AdamW moments + fp32 master copy = 16 bytes per parameter.
    assert report["training_total"] == 16 * n
    assert report["weights"] == 2 * n
    cfg = model.config
    assert report["kv_cache"] == 2 * cfg.n_layer * 8 * (16384 // 128) * 8192 * 2
    fp32 = model.memory_report(dtype=torch.float32, batch_size=2, seq_len=100)
    assert fp32["fp32_master"] == 0 and fp32["training_total"] == 16 * n
    assert fp32["kv_cache"] == 2 * 126 * 8 * 128 * 100 * 2 * 4


def test_gpt2_flops_per_token():
    model = build("gpt2", device="meta")
    n = 124_439_808 - 1024 * 768  # tied head counts, the position table does not
    assert model.flops_per_token() == 6 * n + 12 * 12 * 12 * 64 * 1024
    assert model.flops_per_token(seq_len=256) == 6 * n + 12 * 12 * 12 * 64 * 256
    assert model.num_params(non_embedding=True) == 124_439_808 - 1024 * 768 - 50257 * 768


def test_untied_head_counts_as_a_matmul(make_model):
    tied, untied = make_model(), make_model(tie_embeddings=False)
    assert untied.num_params() == tied.num_params() + 64 * 32
    assert untied.active_matmul_params() == tied.active_matmul_params()
    assert untied.num_params(non_embedding=True) == tied.num_params(non_embedding=True) + 64 * 32


# --------------------------------------------------------------------------------------------- init


def test_init_scales_residual_projections():
    torch.manual_seed(0)
    n_layer = 4
    model = GPT(GPTConfig(vocab_size=512, block_size=64, n_layer=n_layer, n_head=4, n_embd=256))
    resid = 0.02 / math.sqrt(2 * n_layer)
    for blk in model.blocks:
        assert blk.attn.proj.weight.std().item() == pytest.approx(resid, rel=0.03)
        assert blk.mlp.proj.weight.std().item() == pytest.approx(resid, rel=0.03)
        assert blk.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.03)
        assert blk.mlp.fc.weight.std().item() == pytest.approx(0.02, rel=0.03)
        assert blk.attn.qkv.weight.mean().abs().item() < 1e-3
        assert torch.count_nonzero(blk.attn.qkv.bias) == 0 and torch.count_nonzero(blk.mlp.proj.bias) == 0
        assert torch.equal(blk.norm1.weight, torch.ones(256))
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert model.wpe.weight.std().item() == pytest.approx(0.02, rel=0.03)


def test_tied_weights_share_storage(make_model):
    model = make_model()
    assert model.lm_head.weight is model.wte.weight
    with torch.no_grad():
        model.wte.weight[3, 5] = 123.0
    assert model.lm_head.weight[3, 5].item() == 123.0
    untied = make_model(tie_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.wte.weight.data_ptr()


# --------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(n_embd=30, n_head=4), "n_embd"),
        (dict(n_head=4, n_kv_head=3), "n_kv_head"),
        (dict(n_head=4, n_kv_head=5), "n_kv_head"),
        (dict(n_embd=36, n_head=4, pos_encoding="rope"), "rope"),
        (dict(n_experts=2, moe_top_k=3), "moe_top_k"),
        (dict(dropout=1.0), "dropout"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(attention_window=0), "attention_window"),
        (dict(norm_eps=0.0), "norm_eps"),
    ],
)
def test_config_validation_names_the_field(overrides, field):
    cfg = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=4, n_embd=32)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    with pytest.raises(ValueError, match=field):
        cfg.validate()
    with pytest.raises(ValueError, match=field):
        GPT(cfg)


def test_valid_config_validates_to_itself():
    cfg = GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=4, n_embd=32, n_kv_head=2)
    assert cfg.validate() is cfg
    assert cfg.hidden_dim == 128
    assert GPTConfig(n_embd=768, activation="swiglu").hidden_dim == 2048
    # Llama 7B: int(8/3 * 4096) = 10922 rounded up to a multiple of 256.
    assert GPTConfig(n_embd=4096, activation="swiglu", mlp_multiple_of=256).hidden_dim == 11008
    assert GPTConfig(n_embd=768, activation="swiglu", mlp_hidden=100).hidden_dim == 100


# --------------------------------------------------------------------------------------------- packed linears

needs_onednn = pytest.mark.skipif(not cpu_fast.available(), reason="oneDNN packed linear not available here")


@needs_onednn
@pytest.mark.parametrize("batch", [1, 3])
def test_packed_linears_match_plain_forward_and_repack_on_change(make_model, rand_ids, batch, monkeypatch):
    monkeypatch.setattr(cpu_fast, "forced", "packed")  # the measured plan may pick plain on this CPU
    model = make_model(dtype=torch.float32, init_std=0.1, pos_encoding="rope", activation="swiglu")
    idx = rand_ids(batch, 10)
    with torch.inference_mode():
        plain = model(idx, all_logits=True)[0]
        plain_last = model(idx)[0]
        with cpu_fast.packed_linears(model):
            packed = model(idx, all_logits=True)[0]
            packed_last = model(idx)[0]
    assert "_kiln_packed" in model.blocks[0].attn.qkv.__dict__, "the packed path was not used"
    assert "forward" not in model.blocks[0].attn.qkv.__dict__, "forward not restored on exit"
    assert torch.allclose(packed, plain, atol=1e-4, rtol=0)
    assert torch.allclose(packed_last, plain_last, atol=1e-4, rtol=0)

    with torch.no_grad():
        model.blocks[0].attn.qkv.weight.mul_(-2.0)
        model.blocks[1].mlp.proj.weight.add_(0.05)
        model.wte.weight.mul_(1.5)  # the tied LM head
    with torch.inference_mode():
        plain2 = model(idx, all_logits=True)[0]
        with cpu_fast.packed_linears(model):
            packed2 = model(idx, all_logits=True)[0]
    assert not torch.allclose(plain2, plain, atol=1e-3)
    assert torch.allclose(packed2, plain2, atol=1e-4, rtol=0)


@needs_onednn
def test_entering_packed_linears_again_reuses_the_plan_without_walking_the_model(make_model, rand_ids, monkeypatch):
    """A server enters `packed_linears` once per decode step: after the first plan it takes the layers kept with
    the plan instead of walking every module (which cost ~0.25 ms a step for gpt2), and still restores them."""
    model = make_model(dtype=torch.float32)
    idx = rand_ids(1, 4)
    with torch.inference_mode():
        want = model(idx)[0]
        with cpu_fast.packed_linears(model):
            model(idx)
        monkeypatch.setattr(type(model), "modules", lambda self: pytest.fail("walked the modules again"))
        for _ in range(2):
            with cpu_fast.packed_linears(model):
                assert "forward" in model.lm_head.__dict__
                got = model(idx)[0]
            assert "forward" not in model.lm_head.__dict__
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


@needs_onednn
def test_packed_linears_is_a_no_op_with_gradients_or_float64(make_model, rand_ids):
    model = make_model(dtype=torch.float32)
    with cpu_fast.packed_linears(model):
        model(rand_ids(1, 4))
    assert "_kiln_packed" not in model.lm_head.__dict__
    model64 = make_model(dtype=torch.float64)
    with torch.inference_mode(), cpu_fast.packed_linears(model64):
        model64(rand_ids(1, 4))
    assert "_kiln_packed" not in model64.lm_head.__dict__


@needs_onednn
def test_plan_times_both_paths_per_regime_and_keeps_packs_only_where_packing_won(make_model, rand_ids, monkeypatch):
    model = make_model(dtype=torch.float32)
    with torch.inference_mode(), cpu_fast.packed_linears(model):
        model(rand_ids(1, 4))
    chosen = cpu_fast.plan(model)
    assert set(chosen) == {1, 8, 64}
    assert all(path in cpu_fast.PATHS or path.startswith("mixed (") for path in chosen.values())
    assert "gemv" not in chosen[64], "the hand-written kernels take at most 8 rows"
    assert cpu_fast.plan(model) is chosen, "the plan is measured once per model, not per call"
    for m in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        packs = m.__dict__.get("_kiln_packed", {})
        assert set(packs) == {cpu_fast.pack_hint(h) for h, path in m.__dict__["_kiln_path"].items() if path == "packed"}
    cpu_fast.release(model)
    monkeypatch.setattr(cpu_fast, "forced", "plain")
    with torch.inference_mode(), cpu_fast.packed_linears(model):
        model(rand_ids(2, 4))
    assert "_kiln_packed" not in model.lm_head.__dict__ or not model.lm_head.__dict__["_kiln_packed"]


@needs_onednn
def test_plan_chooses_per_layer_shape(make_model, rand_ids, monkeypatch):
    """Where packing wins for one layer shape only (here, by decree: the LM head's), only the layers of that shape
    decode packed, the plan says so, and the logits are the plain forward's."""
    model = make_model(dtype=torch.float32)
    head = (model.lm_head.in_features, model.lm_head.out_features)
    monkeypatch.setattr(cpu_fast, "_fastest", lambda group, hint, p, paths: "packed" if (group[0].in_features,
                        group[0].out_features) == head else "plain")  # fmt: skip
    idx = rand_ids(2, 6)
    with torch.inference_mode():
        want = model(idx)[0]
        with cpu_fast.packed_linears(model):
            got = model(idx)[0]
    shapes = {(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    assert cpu_fast.plan(model)[8] == f"mixed (plain for {len(shapes) - 1}, packed for 1 of {len(shapes)} shapes)"
    assert len(shapes) > 2
    for m in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        assert ("_kiln_packed" in m.__dict__ and 8 in m.__dict__["_kiln_packed"]) == ((m.in_features,
                m.out_features) == head)  # fmt: skip
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not cpu_fast.native_bf16(), reason="this CPU has no hardware bf16 (AMX or AVX512-BF16)")
def test_bf16_packed_linears_match_bf16_plain_forward(make_model, rand_ids, monkeypatch):
    monkeypatch.setattr(cpu_fast, "forced", "packed")
    model = make_model(dtype=torch.float32, init_std=0.1).to(torch.bfloat16)
    idx = rand_ids(3, 10)
    with torch.inference_mode():
        plain = model(idx, all_logits=True)[0].float()
        with cpu_fast.packed_linears(model):
            packed = model(idx, all_logits=True)[0].float()
    assert "_kiln_packed" in model.lm_head.__dict__, "bf16 on a bf16 CPU should use the packed path"
    # Both round to bf16 after each product, in different summation orders: equal to bf16's precision.
    assert (packed - plain).abs().max() <= 0.02 * plain.abs().max()


def test_the_plan_times_its_candidates_in_turns_so_a_burst_of_load_cannot_pick_the_slower():
    """A neighbour's burst of load that covers three timed calls in a row: timed one path after another it would
    fall on all three of the faster path's rounds; in turns each path keeps a quiet round and the faster one wins."""
    n = 0

    def call(seconds: float):
        def run() -> None:
            nonlocal n
            n += 1
            # calls 2-4: one path's timed rounds had it been timed after its own warm-up, before the other's
            time.sleep(seconds + (0.05 if 2 <= n <= 4 else 0.0))

        return run

    best = cpu_fast.best_times({"fast": call(0.002), "slow": call(0.01)}, rounds=3)
    assert n == 8
    assert best["fast"] < 0.01 < best["slow"] < 0.05
    assert min(best, key=best.get) == "fast"
