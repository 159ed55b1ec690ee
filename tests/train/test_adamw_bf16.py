"""AdamW with bf16 moments (`optimizer_state_dtype=bfloat16`): torch's AdamW arithmetic, moments stored in half the
memory by unbiased stochastic rounding (where round-to-nearest stalls), and a `kiln train` run with it that resumes
bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from resume_support import TINY, _assert_same_run, _assert_same_weights, _ckpt, _corpus, _metrics, _resume, _train
from safetensors.torch import load_file

from kiln.train import adamw_bf16
from kiln.train.adamw_bf16 import AdamWBF16States, round_to_bf16


def _two_groups(seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "params": [
                torch.nn.Parameter(torch.randn(16, 8, generator=g)),
                torch.nn.Parameter(torch.randn(5, 7, generator=g).t()),
            ],
            "weight_decay": 0.1,
        },
        {"params": [torch.nn.Parameter(torch.randn(8, generator=g))], "weight_decay": 0.0},
    ]


def _run(opt_cls, steps: int, **kw) -> list[torch.Tensor]:
    groups = _two_groups()
    opt = opt_cls(groups, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for group in groups:
            for p in group["params"]:
                p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return [p.detach().clone() for group in groups for p in group["params"]]


@pytest.mark.parametrize("chunk", [1 << 17, 7])
def test_float32_moments_give_torch_adamw_exactly(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole tensors and chunks of 7 elements (a remainder in every tensor); a strided parameter among them."""
    monkeypatch.setattr(adamw_bf16, "CHUNK", chunk)
    ours = _run(AdamWBF16States, 6, state_dtype=torch.float32)
    want = _run(torch.optim.AdamW, 6, foreach=False)
    for a, b in zip(ours, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_bf16_moments_take_half_the_memory_and_track_fp32_adamw() -> None:
    start = [p.detach().clone() for group in _two_groups() for p in group["params"]]
    ours = _run(AdamWBF16States, 20)
    want = _run(torch.optim.AdamW, 20, foreach=False)
    for s, a, b in zip(start, ours, want, strict=True):
        moved = (b - s).abs().max()
        assert (a - b).abs().max() < 0.02 * moved, "bf16 moments should move the weights as fp32 moments do"
        assert not torch.equal(a, b), "the moments are really rounded"
    groups = _two_groups()
    opt = AdamWBF16States(groups)
    for group in groups:
        for p in group["params"]:
            p.grad = torch.ones_like(p)
    opt.step()
    for state in opt.state.values():
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.bfloat16


def test_stochastic_rounding_is_unbiased_where_round_to_nearest_stalls() -> None:
    # 1 + 2^-10 lies between the bf16 values 1 and 1 + 2^-7: nearest rounding always gives 1.
    x = torch.full((200_000,), 1 + 2**-10)
    torch.manual_seed(0)
    assert round_to_bf16(x).float().mean().item() == pytest.approx(1 + 2**-10, abs=2e-5)
    assert x.to(torch.bfloat16).float().mean().item() == 1.0

    # AdamW's second moment under a constant gradient of 1 with beta2 = 0.999: after 1,000 steps it is
    # 1 - 0.999^1000 = 0.632 in exact arithmetic. Stored in bf16 with nearest rounding it stops growing once a
    # step's 0.1% change falls under half of bf16's spacing; stochastic rounding keeps it on track on average.
    beta2, steps, n = 0.999, 1000, 4096
    p = torch.nn.Parameter(torch.zeros(n))
    opt = AdamWBF16States([p], lr=0.0, betas=(0.9, beta2), weight_decay=0.0)
    v_rn = torch.zeros(n, dtype=torch.bfloat16)
    for _ in range(steps):
        p.grad = torch.ones(n)
        opt.step()
        v_rn = (v_rn.float() * beta2 + (1 - beta2)).to(torch.bfloat16)
    exact = 1 - beta2**steps
    v = opt.state[p]["exp_avg_sq"]
    assert v.dtype == torch.bfloat16 and v.float().mean().item() == pytest.approx(exact, rel=0.01)
    assert opt.state[p]["exp_avg"].float().mean().item() == pytest.approx(1 - 0.9**steps, rel=0.01)
    assert v_rn.float().mean().item() < 0.9 * exact


def test_kiln_train_with_bf16_moments_saves_them_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(_corpus(), encoding="utf-8")
    args = [*TINY, "optimizer_state_dtype=bfloat16", "schedule=constant", "warmup_steps=2", "eval_interval=2"]
    longer = _train(tmp_path / "longer", corpus, *args, "max_steps=8")
    out_dir = tmp_path / "run"
    _train(out_dir, corpus, *args, "max_steps=4")
    moments = {k: t for k, t in load_file(str(_ckpt(out_dir, 4) / "optimizer.safetensors")).items() if "exp_avg" in k}
    assert moments and all(t.dtype == torch.bfloat16 for t in moments.values())
    rc, _, err = _resume(out_dir, "max_steps=8")
    assert rc == 0, err
    _assert_same_run(_metrics(out_dir), longer)
    _assert_same_weights(_ckpt(out_dir, 8), _ckpt(tmp_path / "longer", 8))


def test_an_unknown_state_dtype_is_a_clear_error() -> None:
    from kiln.train.config import TrainConfig

    with pytest.raises(ValueError, match="optimizer_state_dtype must be one of float32, bfloat16"):
        TrainConfig(optimizer_state_dtype="float16").validate()
    with pytest.raises(ValueError, match="not supported with parallel=fsdp"):
        TrainConfig(optimizer_state_dtype="bfloat16", parallel="fsdp").validate()
