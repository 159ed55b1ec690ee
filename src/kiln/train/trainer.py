"""The training loop: draw micro-batches, forward, backward (accumulating), clip, step, repeat; evaluate,
log and checkpoint; stop cleanly on a signal, on the clock, or when the loss blows up.

The same loop runs one CPU process, or N processes under torchrun with DDP or FSDP2; see
`kiln.train.distributed`. Everything a resumed run needs is in its checkpoints (`kiln.train.state`), and a
run resumed from step k computes exactly the losses the uninterrupted run computed after step k.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from kiln.config import from_dict, load_config, to_dict
from kiln.generate import SamplingParams, generate
from kiln.model import GPT
from kiln.model.checkpoint import load_checkpoint, save_checkpoint
from kiln.train import distributed as D
from kiln.train.config import TrainConfig
from kiln.train.data import bytes_per_token, prepare_data, token_byte_lengths
from kiln.train.loader import TokenLoader, count_windows, val_batches
from kiln.train.metrics import MetricsLog, peak_tflops
from kiln.train.optim import build_optimizers, set_lr
from kiln.train.precision import autocast, grad_scaler, resolve_precision
from kiln.train.schedule import lr_multiplier
from kiln.train.state import (
    CHECKPOINTS,
    ResumeError,
    find_resume_dir,
    flatten_optimizer_states,
    prune,
    read_optimizer_tensors,
    read_trainer_state,
    rng_state,
    set_rng_state,
    step_dirs,
    unflatten_optimizer_states,
    write_checkpoint,
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or spiked far above its running average; the last good checkpoint is kept."""


def resume_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """The config a run was started with (from its latest checkpoint), with `key=value` overrides applied
    (max_steps=..., say, to train on); out_dir is the run's directory."""
    ckpt = find_resume_dir(path)
    state = read_trainer_state(ckpt)
    base = from_dict(TrainConfig, state["train_config"], where=str(ckpt / "trainer_state.json"))
    base.out_dir = ckpt.parent.parent
    return load_config(TrainConfig, None, overrides, base=base)


@dataclass
class _Run:
    """What the loop carries between steps (and saves in trainer_state.json)."""

    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    best_val: float = math.inf
    best_step: int | None = None
    val_loss: float = math.nan
    val_bpb: float = math.nan
    train_loss: float = math.nan
    loss_ema: float | None = None


class _Signals:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint at the end of the step and exits."""

    def __init__(self) -> None:
        self.caught: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.caught is not None and signum == signal.SIGINT:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.caught = signum

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _full_states(raw: nn.Module, optimizers: list[torch.optim.Optimizer], info: D.Dist, fsdp: bool):
    """Full (unsharded, CPU) model and optimizer state dicts keyed by parameter name. A collective under
    FSDP (every rank must call it); rank 0 gets the full dicts."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(raw, options=opts) if fsdp else raw.state_dict()
    optim_sds = [get_optimizer_state_dict(raw, opt, options=opts) for opt in optimizers]
    return model_sd, optim_sds


def _load_optimizer_states(raw: nn.Module, optimizers: list[torch.optim.Optimizer], states: list[dict]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if len(states) != len(optimizers):
        raise ResumeError(
            f"the checkpoint has {len(states)} optimizer state(s) but this run builds {len(optimizers)} "
            "(was the optimizer setting changed?)"
        )
    for opt, sd in zip(optimizers, states, strict=True):
        # The saved state brings its hyperparameters along; this run's config wins (a resume may change lr,
        # weight decay, betas ...), so put the fresh group settings back after loading the moments.
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        set_optimizer_state_dict(raw, opt, sd, options=StateDictOptions(full_state_dict=True))
        for group, settings in zip(opt.param_groups, fresh, strict=True):
            group.update(settings)


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[tuple[Tensor, Tensor]], info: D.Dist, device, precision, fsdp) -> float:
    """Mean loss over the fixed val batches, split across ranks (FSDP ranks run equally many forwards,
    since each forward is a collective)."""
    model.eval()
    mine = batches[info.rank :: info.world_size]
    rounds = math.ceil(len(batches) / info.world_size) if fsdp else len(mine)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for i in range(rounds):
        x, y = mine[i] if i < len(mine) else batches[0]
        with autocast(precision, device):
            _, loss = model(x.to(device), y.to(device))
        if i < len(mine):
            total[0] += loss.float()
            total[1] += 1
    D.all_reduce_sum(total, info)
    model.train()
    return float(total[0] / total[1])


def train(cfg: TrainConfig, log=print, resume: str | Path | None = None) -> dict[str, Any]:
    """Run `cfg` to completion (or from a checkpoint of it, with `resume`); returns a summary."""
    cfg.validate()
    info, device = D.init_distributed(cfg.device)
    try:
        return _train(cfg, info, device, log if info.is_main else (lambda _msg: None), resume)
    finally:
        D.shutdown()


def _train(cfg: TrainConfig, info: D.Dist, device: torch.device, log, resume) -> dict[str, Any]:
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif device.type == "cpu" and info.enabled:
        # Several processes on one CPU must share its cores: OpenMP teams that oversubscribe them spin at
        # barriers while their partner threads are descheduled, and every op can take a whole time slice.
        local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    out_dir = Path(cfg.out_dir)
    fsdp = info.enabled and cfg.parallel == "fsdp"

    ckpt_dir = find_resume_dir(resume) if resume is not None else None
    saved = read_trainer_state(ckpt_dir) if ckpt_dir is not None else None
    if saved is not None and saved["world_size"] != info.world_size:
        log(f"note: resuming a {saved['world_size']}-process run on {info.world_size}; data order will differ")

    if saved is None and info.is_main:
        _claim_run_dir(out_dir, cfg.overwrite)

    # ---- data (rank 0 tokenizes a text file once; the others wait, then read the same shards)
    if info.is_main:
        shards = prepare_data(cfg.data, out_dir, cfg.val_fraction)
    D.barrier(info)
    if not info.is_main:
        shards = prepare_data(cfg.data, out_dir, cfg.val_fraction)
    tokenizer = shards.tokenizer
    model_cfg = replace(cfg.model, vocab_size=tokenizer.vocab_size)
    block = model_cfg.block_size
    accum = cfg.grad_accum_steps(info.world_size)

    # ---- model: same seed on every rank, so every replica / shard starts from the same weights
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if ckpt_dir is not None:
        model, _, _ = load_checkpoint(ckpt_dir, device=device)
        if model.config != model_cfg:
            raise ResumeError(f"{ckpt_dir}: its model config differs from this run's (model.* cannot change on resume)")
        model.train()
    else:
        with torch.device(device):
            model = GPT(model_cfg)
    raw: nn.Module = model
    precision = resolve_precision(cfg.precision, device)
    if saved is not None and cfg.precision == "auto":
        precision = saved.get("precision", precision)
    precision = D.broadcast_object(precision, info)
    if device.type == "cuda" and precision == "fp32":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 storage, TF32 tensor-core matmuls (as nanoGPT)
        torch.backends.cudnn.allow_tf32 = True
    module = D.wrap(model, cfg.parallel, info, device)
    fwd = torch.compile(module) if cfg.compile else module
    optimizers = build_optimizers(raw, cfg, device)
    scaler = grad_scaler(precision, device)

    loader = TokenLoader(shards.train, cfg.batch_size, block, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    # The val set is eval_batches optimizer-step batches (batch_size x world_size x accum windows each), so a
    # run's val loss does not depend on how its global batch is split over processes and micro-steps.
    global_batch = cfg.batch_size * info.world_size * accum
    n_val = min(cfg.eval_batches, count_windows(shards.val, block) // global_batch)
    if n_val < 1:
        raise ValueError(
            f"the validation shards hold fewer than one global batch ({global_batch}) of windows of {block + 1} "
            "tokens; give more validation data, a larger val_fraction, or a smaller batch_size / block_size"
        )
    if n_val < cfg.eval_batches:
        log(f"note: the validation split holds only {n_val} of eval_batches={cfg.eval_batches} batches; using those")
    val = list(val_batches(shards.val, cfg.batch_size, block, n_val * info.world_size * accum))
    val_bytes_per_token = bytes_per_token(val, token_byte_lengths(tokenizer))

    run = _Run()
    if saved is not None:
        tensors = read_optimizer_tensors(ckpt_dir, saved.get("optimizer_sha256"))
        _load_optimizer_states(raw, optimizers, unflatten_optimizer_states(tensors, saved["optimizers"]))
        try:
            loader.load_state_dict(saved["loader"])
        except ValueError as e:
            raise ResumeError(f"{ckpt_dir}: {e}") from e
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        rngs = saved["rng"]
        set_rng_state(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
        for key in ("step", "tokens", "elapsed", "best_val", "best_step", "val_loss", "val_bpb", "loss_ema"):
            if key in saved:
                setattr(run, key, math.inf if saved[key] is None and key == "best_val" else saved[key])
    # Only rank 0 touches metrics.jsonl (on resume it is truncated: two ranks doing so at once could race).
    metrics = None
    if info.is_main:
        metrics = MetricsLog(out_dir, resume_step=run.step if saved else None, tensorboard=cfg.tensorboard)

    tokens_per_step = cfg.batch_size * block * info.world_size * accum
    flops_per_token = raw.flops_per_token(block)
    peak = peak_tflops(device, precision, cfg.peak_tflops)
    log(
        f"model: {cfg.preset} with {raw.num_params():,} parameters, vocab {tokenizer.vocab_size}, context {block}; "
        f"data: {loader.windows.total:,} train windows, {n_val} val batches; device {device} x {info.world_size}"
        f"{' (' + cfg.parallel + ')' if info.enabled else ''}, {precision}{', compiled' if cfg.compile else ''}; "
        f"{tokens_per_step:,} tokens/step ({accum} micro-step{'s' if accum > 1 else ''})"
        + (f"; resuming at step {run.step}" if saved else "")
    )

    def save(reason: str) -> Path | None:
        model_sd, optim_sds = _full_states(raw, optimizers, info, fsdp)
        rngs = D.all_gather_object(rng_state(), info)
        path = None
        if info.is_main:
            tensors, optim_meta = flatten_optimizer_states(optim_sds)
            state = {
                "step": run.step,
                "tokens": run.tokens,
                "elapsed": run.elapsed,
                "best_val": None if math.isinf(run.best_val) else run.best_val,
                "best_step": run.best_step,
                "val_loss": run.val_loss,
                "val_bpb": run.val_bpb,
                "loss_ema": run.loss_ema,
                "loader": loader.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "rng": rngs,
                "optimizers": optim_meta,
                "precision": precision,
                "world_size": info.world_size,
                "reason": reason,
                "train_config": to_dict(cfg),
            }
            meta = {"train": to_dict(cfg), "step": run.step, "val_loss": run.val_loss, "val_bpb": run.val_bpb}
            path = write_checkpoint(
                out_dir,
                run.step,
                lambda d: save_checkpoint(d, raw, tokenizer, meta, state_dict=model_sd),
                state,
                tensors,
            )
            prune(out_dir, cfg.keep_last, run.best_step)
        D.barrier(info)
        return path

    # ---- the loop
    budget = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    bar = tqdm(
        total=cfg.max_steps,
        initial=run.step,
        desc="train",
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
        disable=not info.is_main,
    )
    t0 = time.perf_counter() - run.elapsed
    rate_tokens, rate_time = 0, 0.0  # training-only throughput (excludes eval and checkpoint time)
    window_tokens, window_time = 0, 0.0
    interrupted: int | None = None
    last_ckpt: Path | None = None
    ckpt_every = cfg.checkpoint_interval or cfg.eval_interval
    flag = torch.zeros(2, dtype=torch.float64, device=device)
    params = [p for p in raw.parameters() if p.requires_grad]
    with _Signals() as signals:
        while run.step < cfg.max_steps:
            t_step = time.perf_counter()
            progress = (run.step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
            if budget is not None:
                progress = max(progress, run.elapsed / budget)
            mult = lr_multiplier(
                cfg.schedule,
                run.step,
                progress,
                warmup=cfg.warmup_steps,
                min_ratio=cfg.min_lr_ratio,
                decay_fraction=cfg.decay_fraction,
            )
            set_lr(optimizers, mult)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            for micro in range(accum):
                x, y = loader.next_batch()
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with D.grad_sync(module, cfg.parallel, sync=micro == accum - 1):
                    with autocast(precision, device):
                        _, loss = fwd(x, y)
                    scaler.scale(loss / accum).backward()
                loss_sum += loss.detach()
            for opt in optimizers:
                scaler.unscale_(opt)
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or math.inf)
            if hasattr(norm, "full_tensor"):
                norm = norm.full_tensor()
            flag[0] = loss_sum / accum
            flag[1] = 1.0 if signals.caught is not None else 0.0
            D.all_reduce_sum(flag, info)
            train_loss = float(flag[0]) / info.world_size
            stop_signal = float(flag[1]) > 0
            _check_loss(train_loss, run, cfg)
            for opt in optimizers:
                scaler.step(opt)
            scaler.update()
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            run.step += 1
            run.tokens += tokens_per_step
            run.train_loss = train_loss
            if run.step > cfg.warmup_steps:
                run.loss_ema = train_loss if run.loss_ema is None else 0.9 * run.loss_ema + 0.1 * train_loss
            dt = time.perf_counter() - t_step
            if run.step > 1 or saved is not None:  # the first step pays for compilation and warm-up
                rate_tokens, rate_time = rate_tokens + tokens_per_step, rate_time + dt
            window_tokens, window_time = window_tokens + tokens_per_step, window_time + dt
            run.elapsed = time.perf_counter() - t0
            out_of_time = budget is not None and run.elapsed > budget
            last = run.step >= cfg.max_steps or out_of_time or stop_signal
            tok_s = window_tokens / max(window_time, 1e-9)
            if budget is not None:
                # A time-boxed run ends when the clock does: size the bar (and so its ETA) by the steps that fit.
                fit = run.step + (budget - run.elapsed) * run.step / max(run.elapsed, 1e-9)
                bar.total = max(run.step, min(cfg.max_steps, int(fit)))
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}")
            # A signal stop skips the off-schedule evaluation, so a resumed run logs exactly what an
            # uninterrupted one does.
            evaluated = run.step % cfg.eval_interval == 0 or (last and not stop_signal)
            if evaluated:
                run.val_loss = evaluate(raw, val, info, device, precision, fsdp)
                run.val_bpb = run.val_loss / math.log(2) / val_bytes_per_token
                if run.val_loss < run.best_val:
                    run.best_val, run.best_step = run.val_loss, run.step
                bar.write(
                    f"step {run.step}: train {train_loss:.4f}  val {run.val_loss:.4f}  ({run.val_bpb:.3f} bits/byte)"
                ) if info.is_main else None
            if evaluated or run.step % cfg.log_interval == 0:
                record = {
                    "step": run.step,
                    "train_loss": round(train_loss, 6),
                    "lr": optimizers[-1].param_groups[0]["lr"],
                    "grad_norm": round(float(norm), 5),
                    "tokens_per_s": round(tok_s, 1),
                    "mfu": round(tok_s * flops_per_token / (peak * 1e12 * info.world_size), 5) if peak else None,
                    "elapsed_s": round(run.elapsed, 2),
                    "tokens": run.tokens,
                }
                if evaluated:
                    record.update(val_loss=round(run.val_loss, 6), val_bpb=round(run.val_bpb, 6))
                if metrics is not None:
                    metrics.write(record)
                window_tokens, window_time = 0, 0.0
            if run.step % ckpt_every == 0 or last:
                reason = "signal" if stop_signal else ("end" if last else "interval")
                last_ckpt = save(reason) or last_ckpt
            if stop_signal:
                interrupted = signals.caught or signal.SIGTERM
                log(f"\nstopped by signal at step {run.step}; checkpoint saved. Resume: kiln train --resume {out_dir}")
                break
            if out_of_time:
                break
    bar.close()
    if metrics is not None:
        metrics.close()

    sample = ""
    if cfg.sample_tokens and info.is_main and not fsdp and interrupted is None:
        prompt = tokenizer.encode("\n")
        params_s = SamplingParams(temperature=0.8, top_k=50, max_new_tokens=cfg.sample_tokens, seed=cfg.seed)
        raw.eval()
        sample = generate(raw, prompt, params_s, tokenizer=tokenizer).text
    return {
        "steps": run.step,
        "tokens": run.tokens,
        "train_loss": run.train_loss,
        "val_loss": run.val_loss,
        "best_val_loss": run.best_val,
        "val_bpb": run.val_bpb,
        "tokens_per_s": rate_tokens / rate_time if rate_time else math.nan,
        "elapsed_s": time.perf_counter() - t_start,
        "out_dir": str(out_dir),
        "is_main": info.is_main,
        "checkpoint": str(last_ckpt) if last_ckpt else None,
        "precision": precision,
        "interrupted": interrupted,
        "sample": sample,
    }


def _claim_run_dir(out_dir: Path, overwrite: bool) -> None:
    """A new run must not mix with an earlier run's checkpoints, metrics and cached data in the same directory."""
    earlier = step_dirs(out_dir)
    if not earlier and not (out_dir / "data").exists():
        return
    if not overwrite:
        what = f"checkpoints up to step {earlier[-1][0]}" if earlier else "data from an earlier run"
        raise ValueError(
            f"{out_dir} already holds {what}: continue it with `kiln train --resume {out_dir}`, "
            "start fresh with overwrite=true (deletes it), or choose another out_dir="
        )
    for name in (CHECKPOINTS, "data", "metrics.jsonl", "tensorboard"):
        target = out_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def _check_loss(loss: float, run: _Run, cfg: TrainConfig) -> None:
    """Raise before the optimizer step, so no bad update is applied and no bad checkpoint written."""
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"loss became {loss} at step {run.step + 1}; stopped before applying the update. The last good "
            f"checkpoint is in {cfg.out_dir}; lower the learning rate (lr={cfg.lr}) or use grad_clip."
        )
    if cfg.loss_spike_factor and run.loss_ema is not None and loss > cfg.loss_spike_factor * run.loss_ema:
        raise TrainingDiverged(
            f"loss spiked to {loss:.4f} at step {run.step + 1}, over {cfg.loss_spike_factor}x its running average "
            f"{run.loss_ema:.4f}; stopped before applying the update. The last good checkpoint is in {cfg.out_dir}."
        )
