"""`kiln plan` end to end: budgets in FLOPs, GPU-hours and money agree, the chosen model and its run add up,
impossible plans fail with one line naming what would work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli
from kiln.model.presets import PRESETS, build
from kiln.plan.config import PlanConfig, PlanError
from kiln.plan.gpus import GPUS
from kiln.plan.run import run


def test_chinchilla_budget_plans_a_70b_model_on_1_4t_tokens() -> None:
    s = run(PlanConfig(flops=5.76e23))
    approach1 = next(r for r in s.laws if r["law"] == "approach1")
    assert approach1["params"] == pytest.approx(70e9, rel=0.15)
    assert approach1["tokens"] == pytest.approx(1.4e12, rel=0.15)
    # the depth-dial model chosen for it is the one nearest approach 1's size, counted exactly
    assert s.model["params"] == pytest.approx(approach1["params"], rel=0.1)
    assert s.model["n_embd"] == 64 * s.model["depth"] or s.model["n_embd"] % 128 == 0
    assert s.tokens * s.model["flops_per_token"] == pytest.approx(5.76e23)
    assert s.steps * s.batch_tokens * s.model["flops_per_token"] <= 5.76e23


def test_gpu_hours_and_money_are_the_same_budget() -> None:
    h100 = GPUS["H100-SXM"]
    by_hours = run(PlanConfig(gpu_hours=1000, preset="gpt2"))
    assert by_hours.budget_flops == pytest.approx(1000 * 3600 * h100.tflops_bf16 * 1e12 * 0.4)
    by_money = run(PlanConfig(money=2500, price_per_gpu_hour=2.5, preset="gpt2"))
    assert by_money.budget_flops == pytest.approx(by_hours.budget_flops)
    assert by_money.cost == pytest.approx(2.5 * by_money.gpu_hours)
    assert by_money.cost <= 2500  # whole steps within the budget
    assert by_money.wall_clock_hours == pytest.approx(by_money.gpu_hours / 8)


def test_fixed_model_and_tokens_set_the_budget_from_kilns_exact_flops() -> None:
    s = run(PlanConfig(preset="llama3-8b", tokens=15e12, gpus=16, price_per_gpu_hour=2.0))
    model = build("llama3-8b", device="meta")
    assert s.budget_flops == model.flops_per_token() * 15e12
    assert s.model["params"] == model.num_params()
    assert s.tokens_per_param == pytest.approx(15e12 / model.num_params())
    assert s.tokens_per_non_embedding_param > s.tokens_per_param  # fewer parameters under Kaplan's count
    assert s.steps == -(-15e12 // s.batch_tokens)


def test_llama3_405b_gpu_hours_match_the_llama3_paper_order_of_magnitude() -> None:
    """Llama 3 (Dubey et al. 2024): 405B on 15.6T tokens took 30.84M H100 GPU-hours at 38-43% MFU."""
    s = run(PlanConfig(preset="llama3-405b", tokens=15.6e12, mfu=0.4, gpus=16384))
    assert s.gpu_hours == pytest.approx(30.84e6, rel=0.15)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_plans(name: str) -> None:
    s = run(PlanConfig(preset=name, tokens=1e9))
    assert s.model["params"] == build(name, device="meta").num_params()
    assert len(s.memory) == 3 * 4 * 4 * 2
    assert s.render()


def test_depth_dial_derives_width_heads_batch_and_lr() -> None:
    s = run(PlanConfig(depth=20))
    assert (s.model["n_layer"], s.model["n_embd"], s.model["n_head"]) == (20, 1280, 10)
    assert s.batch_tokens == 2**19
    deeper = run(PlanConfig(depth=32))
    assert deeper.model["lr"] < s.model["lr"]  # wider models take smaller AdamW steps


def test_a_model_that_fits_on_no_number_of_gpus_is_a_one_line_error_with_an_alternative() -> None:
    with pytest.raises(PlanError, match=r"fits on no number of L4.*nearest feasible: gpu="):
        run(PlanConfig(preset="llama3-405b", tokens=1e12, gpu="L4", micro_batch=64))
    rc, _, err = run_cli(["plan", "preset=llama3-405b", "tokens=1e12", "gpu=L4", "micro_batch=64"])
    assert rc == 2 and "nearest feasible" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_budget_below_one_step_is_an_error_with_the_batch_that_fits() -> None:
    with pytest.raises(PlanError, match=r"smaller than one optimizer step.*nearest feasible: batch_tokens=\d+"):
        run(PlanConfig(preset="gpt2", flops=1e14))
    with pytest.raises(PlanError, match="nearest feasible: a budget of at least"):
        run(PlanConfig(preset="gpt2", flops=1e9))


@pytest.mark.parametrize(
    "args, message",
    [
        (["flops=1e20", "money=5"], "give one budget"),
        (["money=100"], "price_per_gpu_hour"),
        (["flops=1e20", "gpu=H900"], "unknown gpu 'H900'"),
        (["flops=-1"], "flops must be > 0"),
        ([], "give a budget"),
        (["preset=gpt2", "gpus=6", "tensor_parallel=4"], "multiple of tensor_parallel"),
    ],
)
def test_bad_input_is_a_one_line_error(args: list[str], message: str) -> None:
    rc, _, err = run_cli(["plan", *args])
    assert rc == 2 and message in err and "Traceback" not in err


def test_cli_writes_plan_json_and_its_config(tmp_path: Path) -> None:
    rc, out, _ = run_cli(["plan", "flops=1e21", "--out", str(tmp_path)])
    assert rc == 0 and "compute-optimal" in out
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["budget_flops"] == 1e21 and data["laws"][0]["law"] == "approach1"
    assert (tmp_path / "kiln-plan.toml").is_file()
