"""Tests for the optimizer split, LR schedules, config checks, precision, RNG/optimizer state and metrics."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

import kiln.train.metrics as metrics_mod
import kiln.train.precision as precision_mod
from kiln.model import GPT, GPTConfig
from kiln.train.config import TrainConfig
from kiln.train.metrics import MetricsLog, peak_tflops
from kiln.train.muon import Muon
from kiln.train.optim import build_optimizers, set_lr
from kiln.train.precision import autocast, cpu_has_amx, grad_scaler, resolve_precision
from kiln.train.schedule import lr_multiplier
from kiln.train.state import flatten_optimizer_states, rng_state, set_rng_state, unflatten_optimizer_states

CPU = torch.device("cpu")
SHAPE = dict(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=32)
# ------------------------------------------------------------------------------------------------ build_optimizers


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(tie_embeddings=True),
        dict(tie_embeddings=False),
        dict(tie_embeddings=False, pos_encoding="rope", norm="rmsnorm", activation="swiglu", bias=False),
        dict(n_experts=2, moe_top_k=1, activation="swiglu", mlp_hidden=32),
    ],
)
def test_build_optimizers_muon_split(overrides) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**{**SHAPE, **overrides}))
    cfg = TrainConfig(
        optimizer="muon", lr=4e-3, muon_lr=0.03, muon_momentum=0.9, muon_weight_decay=0.05, weight_decay=0.1
    )
    muon, adamw = build_optimizers(model, cfg, CPU)
    assert isinstance(muon, Muon)
    assert isinstance(adamw, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}

    muon_names = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    assert muon_names == {n for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2}
    assert any(".attn." in n for n in muon_names) and any(".mlp." in n for n in muon_names)

    decay, no_decay = adamw.param_groups
    decayed = {names[id(p)] for p in decay["params"]}
    assert "wte.weight" in decayed
    if overrides.get("pos_encoding", "learned") == "learned":
        assert "wpe.weight" in decayed
    if not model.config.tie_embeddings:
        assert "lm_head.weight" in decayed
    else:
        assert model.lm_head.weight is model.wte.weight
    assert not any(n.startswith("blocks.") for n in decayed)
    assert all(p.dim() < 2 for p in no_decay["params"])
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert any("norm" in n for n in no_decay_names)
    if model.config.bias:
        assert any(n.endswith(".bias") for n in no_decay_names)

    # every trainable parameter exactly once across both optimizers
    ids = [id(p) for opt in (muon, adamw) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}

    for g in muon.param_groups:
        assert g["peak_lr"] == g["lr"] == 0.03
        assert g["weight_decay"] == 0.05
        assert g["momentum"] == 0.9
        assert g["nesterov"] is True
    for g in adamw.param_groups:
        assert g["peak_lr"] == g["lr"] == 4e-3
        assert g["fused"] is True  # plain CPU tensors: the fused kernel
    assert decay["weight_decay"] == 0.1
    assert no_decay["weight_decay"] == 0.0


def test_build_optimizers_skips_frozen_params() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SHAPE, tie_embeddings=False))
    frozen = [model.blocks[0].attn.qkv.weight, model.lm_head.weight, model.norm_f.weight]
    for p in frozen:
        p.requires_grad_(False)
    opts = build_optimizers(model, TrainConfig(optimizer="muon"), CPU)
    ids = {id(p) for opt in opts for g in opt.param_groups for p in g["params"]}
    assert ids == {id(p) for p in model.parameters() if p.requires_grad}
    assert not ids & {id(p) for p in frozen}


def test_build_optimizers_adamw_only_has_no_muon() -> None:
    model = GPT(GPTConfig(**SHAPE))
    opts = build_optimizers(model, TrainConfig(optimizer="adamw"), CPU)
    assert len(opts) == 1 and isinstance(opts[0], torch.optim.AdamW)


def test_set_lr_scales_every_group_from_its_peak() -> None:
    model = GPT(GPTConfig(**SHAPE))
    opts = build_optimizers(model, TrainConfig(optimizer="muon", lr=4e-3, muon_lr=0.03), CPU)
    for mult in (0.25, 0.0, 1.0, 0.5):
        set_lr(opts, mult)
        for opt in opts:
            for g in opt.param_groups:
                assert g["lr"] == pytest.approx(g["peak_lr"] * mult)
        assert opts[0].param_groups[0]["lr"] == pytest.approx(0.03 * mult)
        assert opts[1].param_groups[0]["lr"] == pytest.approx(4e-3 * mult)
    # set_lr never touches peak_lr, so repeated calls do not compound
    assert [g["peak_lr"] for opt in opts for g in opt.param_groups] == [0.03, 4e-3, 4e-3]


# ------------------------------------------------------------------------------------------------ schedules

KW = dict(warmup=10, min_ratio=0.1)


@pytest.mark.parametrize("kind", ["wsd", "constant"])
def test_warmup_identical_to_cosine(kind: str) -> None:
    for step in range(10):
        for progress in (0.0, 0.5, 0.95, 1.0):
            m = lr_multiplier(kind, step, progress, **KW)
            assert m == lr_multiplier("cosine", step, progress, **KW) == pytest.approx((step + 1) / 10)


def test_wsd_stable_then_linear_decay() -> None:
    kw = dict(KW, decay_fraction=0.2)
    # stable: exactly the peak up to and including the start of the decay (progress 0.8)
    for progress in (-0.5, 0.0, 0.3, 0.79, 0.8):
        assert lr_multiplier("wsd", 50, progress, **kw) == 1.0
    # decay: linear from 1 at 0.8 to min_ratio at 1, clamped after
    assert lr_multiplier("wsd", 50, 0.85, **kw) == pytest.approx(1 - 0.9 * 0.25)
    assert lr_multiplier("wsd", 50, 0.9, **kw) == pytest.approx(0.55)
    assert lr_multiplier("wsd", 50, 1.0, **kw) == pytest.approx(0.1)
    assert lr_multiplier("wsd", 50, 3.0, **kw) == pytest.approx(0.1)
    grid = [0.8 + 0.2 * i / 20 for i in range(21)]
    values = [lr_multiplier("wsd", 50, p, **kw) for p in grid]
    steps = np.diff(values)
    assert np.allclose(steps, steps[0]) and steps[0] < 0


def test_wsd_decay_fraction_and_floor() -> None:
    assert lr_multiplier("wsd", 5, 0.0, warmup=0, min_ratio=0.0, decay_fraction=1.0) == 1.0
    assert lr_multiplier("wsd", 5, 0.5, warmup=0, min_ratio=0.0, decay_fraction=1.0) == pytest.approx(0.5)
    assert lr_multiplier("wsd", 5, 1.0, warmup=0, min_ratio=0.0, decay_fraction=1.0) == 0.0
    assert lr_multiplier("wsd", 5, 0.95, warmup=0, min_ratio=0.2, decay_fraction=0.1) == pytest.approx(0.6)
    # the default decay_fraction is 0.2
    assert lr_multiplier("wsd", 50, 0.9, **KW) == pytest.approx(0.55)


def test_constant_after_warmup() -> None:
    for progress in (-1.0, 0.0, 0.5, 1.0, 2.0):
        assert lr_multiplier("constant", 10, progress, **KW) == 1.0
    assert lr_multiplier("constant", 0, 0.0, warmup=0, min_ratio=0.1) == 1.0


def test_unknown_schedule() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        lr_multiplier("linear", 10, 0.5, **KW)


# ------------------------------------------------------------------------------------------------ TrainConfig


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decay_fraction", 0.0),
        ("decay_fraction", 1.5),
        ("beta1", 1.0),
        ("beta1", -0.1),
        ("beta2", 1.0),
        ("muon_momentum", 1.0),
        ("loss_spike_factor", 0.5),
        ("loss_spike_factor", 1.0),
        ("loss_spike_factor", -1.0),
        ("total_batch_tokens", 0),
        ("checkpoint_interval", 0),
        ("peak_tflops", 0.0),
        ("peak_tflops", -5.0),
        ("keep_last", 0),
        ("log_interval", 0),
        ("muon_lr", 0.0),
        ("muon_lr", -0.02),
        ("eps", 0.0),
    ],
)
def test_validate_names_new_fields(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must") as exc:
        TrainConfig(**{field: value}).validate()
    assert str(value) in str(exc.value)


@pytest.mark.parametrize(
    "fields",
    [
        dict(decay_fraction=1.0),
        dict(loss_spike_factor=0.0),
        dict(loss_spike_factor=1.01),
        dict(beta1=0.0, beta2=0.0, muon_momentum=0.0),
        dict(total_batch_tokens=None, checkpoint_interval=None, peak_tflops=None),
        dict(checkpoint_interval=1, keep_last=1, log_interval=1, peak_tflops=1e-3),
    ],
)
def test_validate_accepts_edges(fields) -> None:
    TrainConfig(**fields).validate()


def test_grad_accum_steps() -> None:
    cfg = TrainConfig(batch_size=4).validate()
    block = cfg.model.block_size
    per_micro = 4 * block
    assert cfg.grad_accum_steps(1) == 1  # total_batch_tokens None
    assert cfg.grad_accum_steps(8) == 1
    cfg.total_batch_tokens = per_micro
    assert cfg.grad_accum_steps(1) == 1
    cfg.total_batch_tokens = 6 * per_micro
    assert cfg.grad_accum_steps(1) == 6
    assert cfg.grad_accum_steps(2) == 3  # every process counts towards the global batch
    assert cfg.grad_accum_steps(3) == 2
    with pytest.raises(ValueError, match="total_batch_tokens") as exc:
        cfg.grad_accum_steps(4)
    msg = str(exc.value)
    for number in (6 * per_micro, 4, block, 4 * per_micro):
        assert str(number) in msg
    assert "4 process(es)" in msg
    cfg.total_batch_tokens = per_micro + 1
    with pytest.raises(ValueError, match=f"{per_micro + 1} is not a multiple"):
        cfg.grad_accum_steps(1)


# ------------------------------------------------------------------------------------------------ precision


def test_cpu_auto_precision_follows_amx(monkeypatch) -> None:
    assert resolve_precision("auto", CPU) == ("bf16" if cpu_has_amx() else "fp32")
    monkeypatch.setattr(precision_mod, "cpu_has_amx", lambda: False)
    assert resolve_precision("auto", CPU) == "fp32"
    monkeypatch.setattr(precision_mod, "cpu_has_amx", lambda: True)
    assert resolve_precision("auto", CPU) == "bf16"
    # AMX is a CPU feature: other non-CUDA devices stay fp32
    assert resolve_precision("auto", torch.device("mps")) == "fp32"


def test_cpu_explicit_precision(monkeypatch) -> None:
    monkeypatch.setattr(precision_mod, "cpu_has_amx", lambda: False)
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("fp32", CPU) == "fp32"
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", CPU)


@pytest.mark.parametrize(("bf16_ok", "expected"), [(True, "bf16"), (False, "fp16")])
def test_cuda_auto_precision(monkeypatch, bf16_ok: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    cuda = torch.device("cuda")
    assert resolve_precision("auto", cuda) == expected
    assert resolve_precision("fp16", cuda) == "fp16"
    assert resolve_precision("fp32", cuda) == "fp32"


def test_autocast() -> None:
    lin = nn.Linear(4, 4)
    x = torch.randn(2, 4)
    ctx = autocast("fp32", CPU)
    assert isinstance(ctx, contextlib.nullcontext)
    with ctx:
        assert lin(x).dtype == torch.float32
    with autocast("bf16", CPU):
        assert lin(x).dtype == torch.bfloat16
    assert lin(x).dtype == torch.float32  # and it ends with the block
    assert lin.weight.dtype == torch.float32  # master weights untouched


@pytest.mark.parametrize(("precision", "enabled"), [("fp16", True), ("bf16", False), ("fp32", False)])
def test_grad_scaler_only_for_fp16(precision: str, enabled: bool) -> None:
    scaler = grad_scaler(precision, CPU)
    assert isinstance(scaler, torch.amp.GradScaler)
    assert scaler.is_enabled() is enabled
    if not enabled:
        loss = torch.tensor(2.5)
        assert scaler.scale(loss) is loss  # a disabled scaler is a no-op


# ------------------------------------------------------------------------------------------------ RNG state


def _draw() -> tuple:
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        float(np.random.standard_normal()),
        torch.rand(3).tolist(),
        torch.randn(2).tolist(),
    )


def test_rng_state_round_trip() -> None:
    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        random.seed(1)
        np.random.seed(2)
        torch.manual_seed(3)
        # leave a cached Gaussian in python's and numpy's generators: part of the state too
        random.gauss(0, 1)
        np.random.standard_normal()
        state = rng_state()
        text = json.dumps(state)  # JSON-serialisable, as trainer_state.json needs
        first = _draw()
        assert _draw() != first
        set_rng_state(json.loads(text))
        assert _draw() == first
        set_rng_state(state)
        assert _draw() == first
        assert rng_state() != state
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


# ------------------------------------------------------------------------------------------------ optimizer state


def _train_steps(model: GPT, opts, batches) -> None:
    for x, y in batches:
        _, loss = model(x, y)
        loss.backward()
        for opt in opts:
            opt.step()
            opt.zero_grad(set_to_none=True)


def test_optimizer_state_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(optimizer="muon", lr=3e-3, muon_lr=0.02, muon_weight_decay=0.01)
    model = GPT(GPTConfig(**SHAPE, tie_embeddings=False))
    opts = build_optimizers(model, cfg, CPU)
    gen = _gen(3)
    batches = [(ids[:, :-1], ids[:, 1:]) for ids in (torch.randint(0, 64, (2, 17), generator=gen) for _ in range(3))]
    _train_steps(model, opts, batches[:2])

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    sds = [get_optimizer_state_dict(model, opt, options=options) for opt in opts]
    tensors, meta = flatten_optimizer_states(sds)
    assert "0/blocks.0.attn.qkv.weight/momentum_buffer" in tensors
    assert {"1/lm_head.weight/exp_avg", "1/lm_head.weight/exp_avg_sq", "1/wte.weight/step"} <= set(tensors)
    assert all(key.count("/") == 2 for key in tensors)

    # through the files a checkpoint uses: safetensors for tensors, JSON for the rest
    save_file(tensors, str(tmp_path / "optimizer.safetensors"))
    meta_text = json.dumps(meta)
    restored = unflatten_optimizer_states(load_file(str(tmp_path / "optimizer.safetensors")), json.loads(meta_text))

    assert len(restored) == len(sds)
    for orig, back in zip(sds, restored, strict=True):
        assert set(back["state"]) == set(orig["state"])
        for name, entry in orig["state"].items():
            assert set(back["state"][name]) == set(entry)
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(back["state"][name][key], value), (name, key)
                else:
                    assert back["state"][name][key] == value
        assert len(back["param_groups"]) == len(orig["param_groups"])
        for g_orig, g_back in zip(orig["param_groups"], back["param_groups"], strict=True):
            assert g_back == {k: list(v) if isinstance(v, tuple) else v for k, v in g_orig.items()}

    # fresh model + fresh optimizers, state loaded: the next step is bit-identical
    fresh = GPT(GPTConfig(**SHAPE, tie_embeddings=False))
    fresh.load_state_dict(model.state_dict())
    fresh_opts = build_optimizers(fresh, cfg, CPU)
    for opt, sd in zip(fresh_opts, restored, strict=True):
        set_optimizer_state_dict(fresh, opt, sd, options=StateDictOptions(full_state_dict=True))
    # a control without the loaded state, to show the comparison can fail
    control = GPT(GPTConfig(**SHAPE, tie_embeddings=False))
    control.load_state_dict(model.state_dict())
    control_opts = build_optimizers(control, cfg, CPU)

    for m, o in ((model, opts), (fresh, fresh_opts), (control, control_opts)):
        _train_steps(m, o, batches[2:])
    ref = dict(model.named_parameters())
    for name, p in fresh.named_parameters():
        assert torch.equal(p, ref[name]), name
    assert not all(torch.equal(p, ref[name]) for name, p in control.named_parameters())
    for opt, fresh_opt in zip(opts, fresh_opts, strict=True):
        assert opt.param_groups[0]["peak_lr"] == fresh_opt.param_groups[0]["peak_lr"]


def test_flatten_keeps_non_tensor_state_in_meta() -> None:
    sd = {
        "state": {"w": {"step": 3, "exp_avg": torch.ones(2)}},
        "param_groups": [{"params": ["w"], "lr": 0.1, "betas": (0.9, 0.99)}],
    }
    tensors, meta = flatten_optimizer_states([sd])
    assert list(tensors) == ["0/w/exp_avg"]
    groups = [{"params": ["w"], "lr": 0.1, "betas": [0.9, 0.99]}]
    assert meta == [{"param_groups": groups, "scalars": {"w": {"step": 3}}}]
    (back,) = unflatten_optimizer_states(tensors, json.loads(json.dumps(meta)))
    assert back["state"]["w"]["step"] == 3
    assert torch.equal(back["state"]["w"]["exp_avg"], torch.ones(2))


# ------------------------------------------------------------------------------------------------ metrics


def test_cpu_peak_is_the_fastest_matmul_not_the_mean(monkeypatch) -> None:
    """A slow moment during the probe (another process, a throttled VM) must not lower the CPU ceiling: with
    repetitions of 50, 10, 50 and 1,000 ms the peak is the 10 ms one's rate. The mean (the old probe) read 28x
    lower, and training in a faster minute then logged an MFU above 1."""

    class Clock:  # a clock that moves only when a matmul runs
        now = 0.0

        def perf_counter(self) -> float:
            return self.now

    clock = Clock()
    real_matmul = torch.Tensor.__matmul__
    steps = iter([0.0, 0.05, 0.01, 0.05, 1.0])  # the warm-up, three timed repetitions, then past the budget

    def timed_matmul(a, b):
        clock.now += next(steps)
        return real_matmul(a, b)

    monkeypatch.setattr(metrics_mod, "time", clock)
    monkeypatch.setattr(torch.Tensor, "__matmul__", timed_matmul)
    metrics_mod.measured_cpu_tflops.cache_clear()
    try:
        got = metrics_mod.measured_cpu_tflops(torch.float32, n=8, seconds=0.2)
    finally:
        metrics_mod.measured_cpu_tflops.cache_clear()
    assert got == pytest.approx(2 * 8**3 / 0.01 / 1e12)


def test_cpu_peak_probe_leaves_the_global_rng_alone() -> None:
    """The probe runs once a process (cached) after the trainer has seeded torch: had it drawn its matrices from
    the global generator, the first run in a process would train on other dropout masks than a second run of the
    same seed."""
    metrics_mod.measured_cpu_tflops.cache_clear()
    try:
        torch.manual_seed(0)
        expected = torch.rand(4)
        torch.manual_seed(0)
        metrics_mod.measured_cpu_tflops(torch.float32, n=16, seconds=0.01)
        assert torch.equal(torch.rand(4), expected)
    finally:
        metrics_mod.measured_cpu_tflops.cache_clear()


def test_peak_tflops_override_wins(monkeypatch) -> None:
    def no_gpu(*_a, **_k):
        raise AssertionError("the override must win without querying the device")

    monkeypatch.setattr(torch.cuda, "get_device_name", no_gpu)
    monkeypatch.setattr(metrics_mod, "measured_cpu_tflops", no_gpu)
    assert peak_tflops(CPU, "fp32", 12.5) == 12.5
    assert peak_tflops(torch.device("cuda"), "bf16", 300.0) == 300.0


@pytest.mark.parametrize(
    ("name", "precision", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.0),
        ("NVIDIA H100 PCIe", "bf16", 756.0),  # the PCIe entry is checked before the generic H100 one
        ("NVIDIA H200", "fp16", 989.0),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("NVIDIA L40S", "bf16", 362.0),
        ("NVIDIA GeForce RTX 4090", "fp32", 82.6),
        ("Tesla T4", "fp16", None),
    ],
)
def test_peak_tflops_gpu_table(monkeypatch, name: str, precision: str, expected: float | None) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_a, **_k: name)
    assert peak_tflops(torch.device("cuda"), precision) == expected


def test_peak_tflops_cpu_is_measured() -> None:
    value = peak_tflops(CPU, "fp32")
    assert value is not None and 0 < value < 1000
    assert peak_tflops(CPU, "fp32") == value  # measured once, cached
    assert peak_tflops(torch.device("meta"), "fp32") is None


def test_metrics_log_truncates_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "train_loss": 1.0 / s}) for s in range(1, 6)]
    path.write_text("\n".join(lines) + '\n{"step": 6, "train_lo', encoding="utf-8")  # last line cut by a kill
    log = MetricsLog(tmp_path, resume_step=3, tensorboard=False)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    log.write({"step": 4, "train_loss": 0.2})
    log.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3, 4]
    MetricsLog(tmp_path, resume_step=None, tensorboard=False)  # a fresh run starts an empty file
    assert path.read_text() == ""


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_metrics_log_tensorboard_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pip install tensorboard"):
        MetricsLog(tmp_path, resume_step=None, tensorboard=True)
