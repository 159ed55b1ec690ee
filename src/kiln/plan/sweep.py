"""`kiln sweep`: an IsoFLOP experiment of small `kiln train` runs, then Hoffmann et al.'s approaches 2 and 3
fitted to their final losses (see `kiln.plan.fit`), with bootstrap intervals, a figure and fit.json.

Resumable run by run: each run is an ordinary `kiln train` run directory, out_dir/runs/<budget>-d<depth>/, and
gets a `sweep-run.json` when it finishes. Rerunning the same command skips finished runs, resumes an interrupted
one from its latest checkpoint (kiln train's own exact resume) and starts the rest.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from kiln.plan.depth import depth_shape
from kiln.plan.memory import ModelCounts
from kiln.plan.sweep_config import SweepConfig
from kiln.plan.sweep_summary import SweepSummary
from kiln.stage import write_resolved_config
from kiln.train.config import TrainConfig
from kiln.train.data import prepare_data
from kiln.train.trainer import TrainingDiverged, train
from kiln.utils.io import atomic_write_text

DONE = "sweep-run.json"


def run_name(budget: float, depth: int) -> str:
    return f"c{budget:.1e}-d{depth}".replace("+", "")


def planned_runs(config: SweepConfig, vocab_size: int) -> list[dict]:
    """Every (budget, depth) run with its model, exact FLOPs per token and steps (those too short marked)."""
    tokens_per_step = config.batch_size * config.block_size
    runs = []
    for budget in config.budgets:
        for depth in config.depths:
            model = depth_shape(depth, vocab_size=vocab_size, block_size=config.block_size,
                                aspect_ratio=config.aspect_ratio, head_dim=config.head_dim).model  # fmt: skip
            counts = ModelCounts.of(model)
            steps = int(budget // (counts.flops_per_token * tokens_per_step))
            runs.append({
                "name": run_name(budget, depth), "budget": budget, "depth": depth, "n_embd": model.n_embd,
                "params": counts.params, "non_embedding_params": counts.non_embedding,
                "flops_per_token": counts.flops_per_token, "steps": steps, "tokens": steps * tokens_per_step,
                "model": model, "too_short": steps < config.min_steps,
            })  # fmt: skip
    return runs


def train_config(config: SweepConfig, plan: dict, data: str, run_dir: Path) -> TrainConfig:
    """An ordinary kiln train run: the schedule spans the run's own length (cosine to 10%), as Hoffmann et al.
    found necessary for a fair IsoFLOP point; one evaluation at the end gives its loss."""
    steps = plan["steps"]
    return TrainConfig(
        data=data,
        out_dir=run_dir,
        model=plan["model"],
        batch_size=config.batch_size,
        max_steps=steps,
        lr=config.lr,
        warmup_steps=min(100, steps // 10),
        eval_interval=steps,
        eval_batches=config.eval_batches,
        log_interval=max(1, steps // 5),
        checkpoint_interval=max(1, steps // 4),
        precision="fp32",
        threads=config.threads,
        seed=config.seed,
        sample_tokens=0,
        keep_last=1,
    )


def _train_one(config: SweepConfig, plan: dict, data: str, run_dir: Path) -> dict:
    cfg = train_config(config, plan, data, run_dir)
    if any((run_dir / "checkpoints").glob("step_*")):
        cfg = replace(cfg, resume=str(run_dir))  # an interrupted run: continue it exactly
    elif run_dir.exists():
        cfg = replace(cfg, overwrite=True)  # killed before its first checkpoint: nothing to keep
    # Fifteen progress bars would bury the sweep's own one line per run; the trainer's evaluation line stays.
    with contextlib.redirect_stderr(io.StringIO()):
        return train(cfg, log=lambda _line: None)


def run(config: SweepConfig) -> SweepSummary:
    t0 = time.perf_counter()
    config.validate()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_resolved_config(config, out, "sweep")
    shards = prepare_data(config.data, out, val_fraction=0.1)  # once: every run reads the same shards
    data = str(shards.directory.resolve())
    plans = planned_runs(config, shards.tokenizer.vocab_size)
    done, notes, interrupted = [], [], None
    todo = [p for p in plans if not p["too_short"]]
    for p in plans:
        if p["too_short"]:
            notes.append(f"{p['name']}: skipped, {p['steps']} steps < min_steps {config.min_steps}")
    for i, p in enumerate(todo, 1):
        run_dir = out / "runs" / p["name"]
        marker = run_dir / DONE
        if marker.exists():
            done.append(json.loads(marker.read_text(encoding="utf-8")))
            continue
        if config.fit_only:
            continue
        started = time.perf_counter()
        try:
            result = _train_one(config, p, data, run_dir)
        except TrainingDiverged as e:
            notes.append(f"{p['name']}: diverged ({e}); left out of the fit")
            continue
        if result.get("interrupted"):
            interrupted = int(result["interrupted"])
            notes.append(f"interrupted during {p['name']}; rerun the same command to resume it")
            break
        record = {k: v for k, v in p.items() if k not in ("model", "too_short")}
        record |= {"val_loss": result["val_loss"], "train_loss": result["train_loss"], "run_dir": str(run_dir),
                   "seconds": time.perf_counter() - started, "flops": p["flops_per_token"] * p["tokens"]}  # fmt: skip
        atomic_write_text(marker, json.dumps(record, indent=1) + "\n")
        done.append(record)
        print(f"[{i}/{len(todo)}] {p['name']}: {p['params']:,} params, {p['steps']} steps, "
              f"val loss {record['val_loss']:.4f} ({record['seconds']:.0f} s)", flush=True)  # fmt: skip

    # Interrupted: leave at once, as a stopped kiln train does; the rerun fits everything.
    summary = SweepSummary(out_dir=str(out), runs=done) if interrupted else fit_and_plot(config, done, out)
    summary.notes = notes + summary.notes
    summary.interrupted = interrupted
    summary.seconds = time.perf_counter() - t0
    summary.write(out / "fit.json")
    return summary


def fit_and_plot(config: SweepConfig, runs: list[dict], out: Path) -> SweepSummary:
    from kiln.plan.fit import bootstrap, fit_approach2, fit_approach3
    from kiln.plan.plots import plot_sweep

    runs = [r for r in runs if math.isfinite(r["val_loss"])]
    summary = SweepSummary(out_dir=str(out), runs=runs)
    if len(runs) < 3:
        summary.notes.append(f"{len(runs)} finished runs: too few to fit")
        return summary
    c = np.array([r["budget"] for r in runs])
    n = np.array([float(r["params"]) for r in runs])
    d = np.array([float(r["tokens"]) for r in runs])
    loss = np.array([r["val_loss"] for r in runs])
    fit2 = fit_approach2(c, n, loss)
    law = fit_approach3(n, d, loss) if len(runs) >= 5 else None
    ci = bootstrap(c, n, d, loss, law, samples=config.bootstrap, seed=config.seed) if config.bootstrap else {}
    if fit2 is None:
        summary.notes.append("approach 2: fewer than two budgets have a minimum inside the sizes tried")
    else:
        left_out = sorted(set(c.tolist()) - set(fit2.optima))
        if left_out:
            summary.notes.append(
                "approach 2 left out budget(s) "
                + ", ".join(f"{b:.0e}" for b in left_out)
                + ": no minimum inside the sizes tried (add smaller or larger depths)"
            )
        summary.approach2 = {
            "a": fit2.a, "a_ci": ci.get("approach2_a"), "b": 1 - fit2.a, "k": fit2.k,
            "optima": [{"budget": b, "params": v, "tokens": b / (6 * v)} for b, v in fit2.optima.items()],
            "parabolas": {str(b): v for b, v in fit2.parabolas.items()},
        }  # fmt: skip
    if law is None:
        summary.notes.append("approach 3: needs at least 5 finished runs")
    else:
        summary.approach3 = {
            "E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta, "a": law.a, "b": 1 - law.a,
            "huber_objective": law.objective,
            "ci": {k: ci.get(k) for k in ("E", "A", "B", "alpha", "beta")} | {"a": ci.get("approach3_a")},
        }  # fmt: skip
    summary.plots = plot_sweep(runs, fit2, law, out)
    return summary
