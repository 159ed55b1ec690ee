"""A tiny real IsoFLOP sweep: its runs are ordinary kiln train run directories, a rerun skips finished runs and
resumes an unfinished one from its checkpoint, and the fit writes fit.json and the figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_cli
from kiln.model.checkpoint import load_checkpoint
from kiln.plan.sweep import DONE, run
from kiln.plan.sweep_config import SweepConfig


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[SweepConfig, object]:
    out = tmp_path_factory.mktemp("sweep")
    config = SweepConfig(out_dir=out, budgets=[5e9, 1e10, 2e10], depths=[1, 2, 3], aspect_ratio=32, head_dim=32,
                         batch_size=16, min_steps=5, bootstrap=3, eval_batches=2)  # fmt: skip
    return config, run(config)


def test_each_run_is_a_kiln_train_run_directory(swept) -> None:
    config, summary = swept
    assert len(summary.runs) == 7  # depth 3 is 2 and 4 steps at 5e9 and 1e10 FLOPs, under min_steps
    assert any("c5.0e09-d3: skipped" in note for note in summary.notes)
    for r in summary.runs:
        run_dir = Path(r["run_dir"])
        assert (run_dir / "kiln-train.toml").is_file() and (run_dir / "metrics.jsonl").is_file()
        model, tokenizer, _ = load_checkpoint(run_dir)
        assert model.num_params() == r["params"] and tokenizer.vocab_size == 65
        # the run spent its budget: whole steps of exact FLOPs, never more
        assert r["flops"] <= r["budget"] < r["flops"] + r["flops_per_token"] * config.batch_size * config.block_size


def test_fit_json_and_plots_are_written(swept) -> None:
    config, _ = swept
    data = json.loads((Path(config.out_dir) / "fit.json").read_text())
    assert data["plots"] and all(Path(p).stat().st_size > 1000 for p in data["plots"])
    assert {Path(p).suffix for p in data["plots"]} == {".png", ".svg"}
    assert data["approach3"] is not None and set(data["approach3"]["ci"]) >= {"alpha", "beta", "E"}
    assert (Path(config.out_dir) / "kiln-sweep.toml").is_file()


def test_rerun_skips_finished_runs_and_resumes_an_unfinished_one(swept) -> None:
    config, summary = swept
    first = {r["name"]: r for r in summary.runs}
    victim = Path(first["c2.0e10-d1"]["run_dir"])
    (victim / DONE).unlink()  # as if the sweep died after the run's last checkpoint, before recording it
    others = {n: (Path(r["run_dir"]) / DONE).stat().st_mtime_ns for n, r in first.items() if n != "c2.0e10-d1"}
    again = run(config)
    assert {n: (Path(first[n]["run_dir"]) / DONE).stat().st_mtime_ns for n in others} == others  # untouched
    resumed = {r["name"]: r for r in again.runs}["c2.0e10-d1"]
    assert (victim / DONE).is_file()
    assert resumed["val_loss"] == pytest.approx(first["c2.0e10-d1"]["val_loss"], abs=1e-6)


def test_cli_fit_only_and_bad_input(swept) -> None:
    config, _ = swept
    grid = ["budgets=[5e9, 1e10, 2e10]", "depths=[1, 2, 3]", "aspect_ratio=32", "head_dim=32", "batch_size=16"]
    rc, out, _ = run_cli(["sweep", "--out", str(config.out_dir), *grid, "min_steps=5", "bootstrap=0", "--fit-only"])
    assert rc == 0 and "approach 3" in out and "sweep.png" in out
    rc, _, err = run_cli(["sweep", "budgets=[]"])
    assert rc == 2 and "budgets" in err and "Traceback" not in err
