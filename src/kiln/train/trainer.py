"""The training loop as an object: `Trainer` sets a run up, `train_step()` makes one optimizer step, and `fit()`
repeats it, evaluating, logging and checkpointing on schedule, stopping cleanly on a signal, on the clock, or
when the loss blows up.

The same loop runs one CPU process, or N processes under torchrun with DDP or FSDP2; see
`kiln.train.distributed`. `Trainer.state_dict()` is the one list of what a resume restores; checkpoints
(`kiln.train.state`) store it, and a run resumed from step k computes exactly the losses the uninterrupted run
computed after step k. Fine-tuning trainers reuse this one by overriding `build_model`, `next_batch`,
`forward_loss` and `evaluate_loss`.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kiln.config import to_dict
from kiln.generate import SamplingParams, stream
from kiln.generate.context import end_of_text_ids, start_ids
from kiln.model import GPT, GPTConfig
from kiln.model.checkpoint import load_checkpoint, save_checkpoint
from kiln.stage import write_resolved_config
from kiln.train import distributed as D
from kiln.train.config import TrainConfig, resume_config
from kiln.train.data import ShardSet, bytes_per_token, prepare_data, token_byte_lengths
from kiln.train.default_prompt import first_document_opening
from kiln.train.evaluate import evaluate
from kiln.train.full_state import full_model_state, full_optimizer_states, load_optimizer_states
from kiln.train.loader import TokenLoader, count_windows, val_batches
from kiln.train.metrics import MetricsLog, peak_tflops
from kiln.train.optim import build_optimizers, set_lr
from kiln.train.precision import autocast, faster_precision, grad_scaler, resolve_precision, time_training_step
from kiln.train.progress import Progress, StepResult, Throughput
from kiln.train.schedule import lr_multiplier
from kiln.train.signals import StopSignals
from kiln.train.state import (
    ResumeError,
    claim_run_dir,
    find_resume_dir,
    flatten_optimizer_states,
    prune,
    read_optimizer_tensors,
    read_trainer_state,
    rng_state,
    set_rng_state,
    unflatten_optimizer_states,
    write_checkpoint,
)
from kiln.train.task_hook import task_scorer
from kiln.utils.progress import progress_bar

__all__ = ["Progress", "StepResult", "Trainer", "TrainingDiverged", "evaluate", "resume_config", "train"]

Log = Callable[[str], None]
Batch = tuple[Tensor, Tensor]


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf or spiked far above its running average; the last good checkpoint is kept."""

    def __init__(self, message: str, steps: int = 0) -> None:
        super().__init__(message)
        self.steps = steps  # the optimizer steps applied before the bad one


def _quiet(_message: str) -> None:
    """The log of every process but rank 0."""


def train(cfg: TrainConfig, log: Log = print, resume: str | Path | None = None) -> dict[str, Any]:
    """Run `cfg` to completion (or from a checkpoint of it, with `resume`, else `cfg.resume`); returns a summary."""
    cfg.validate()
    info, device = D.init_distributed(cfg.device)
    try:
        return Trainer(cfg, info, device, log, resume if resume is not None else cfg.resume).fit()
    finally:
        D.shutdown()


class Trainer:
    """One pretraining run on this process (rank `info.rank` of `info.world_size`).

    `__init__` sets everything up in a fixed order (threads, run directory, data, model, precision, wrapping,
    optimizers, loaders, the resumed state, metrics); `fit()` runs the loop. Subclasses change what a batch is
    and how its loss is computed by overriding `build_model`, `next_batch`, `forward_loss` and `evaluate_loss`.
    """

    stage_name = "train"  # the command whose resolved config (kiln-<stage>.toml) the run directory gets

    def __init__(
        self, cfg: TrainConfig, info: D.Dist, device: torch.device, log: Log = print, resume: str | Path | None = None
    ) -> None:
        self.t_start = time.perf_counter()
        self.cfg, self.info, self.device = cfg, info, device
        self.log = log if info.is_main else _quiet
        self.out_dir = Path(cfg.out_dir)
        self.fsdp = info.enabled and cfg.parallel == "fsdp"
        # What the run saves as its config: a later run from this file must not resume again.
        self.run_config = replace(cfg, resume=None)
        self.progress = Progress()
        self.signals = StopSignals()
        self.interrupted: int | None = None
        self.task_scores: dict[str, float] = {}  # from the last evaluation, for its metrics.jsonl line
        self.last_checkpoint: Path | None = None
        self._set_threads()

        self.resume_from = find_resume_dir(resume) if resume is not None else None
        saved = read_trainer_state(self.resume_from) if self.resume_from is not None else None
        if saved is not None and saved["world_size"] != info.world_size:
            self.log(f"note: resuming a {saved['world_size']}-process run on {info.world_size}; data order will differ")
        if saved is None and info.is_main:
            claim_run_dir(self.out_dir, cfg.overwrite)

        self.shards: Any = self.setup_data()
        self.tokenizer = self.shards.tokenizer
        self.model_config = self.resolve_model_config()
        self.block = self.model_config.block_size
        self.accum = cfg.grad_accum_steps(info.world_size)
        self.raw = self.build_model()
        self.precision_note = ""  # how "auto" chose, where it measured: for the describe() line
        self.precision = self._resolve_precision(saved)
        self.module = D.wrap(self.raw, cfg.parallel, info, device)
        self.fwd = torch.compile(self.module) if cfg.compile else self.module
        self.params = [p for p in self.raw.parameters() if p.requires_grad]
        self.optimizers = build_optimizers(self.raw, cfg, device)
        self.scaler = grad_scaler(self.precision, device)
        self.loader = self.build_loader()
        self.val = self.build_val_batches()
        self.val_bytes_per_token = self.measure_val_bytes()
        self.tokens_per_step = cfg.batch_size * self.block * info.world_size * self.accum
        self.flops_per_token = self.model_flops_per_token()
        # Before the RNG states are restored: on CPU this may time a matmul of random matrices.
        self.peak = peak_tflops(device, self.precision, cfg.peak_tflops)
        if saved is not None:
            self.load_state_dict(self._read_resume_state(saved))
        self.metrics = self._open_run_files()
        self.budget = cfg.max_minutes * 60 if cfg.max_minutes is not None else None
        self.checkpoint_every = cfg.checkpoint_interval or cfg.eval_interval
        # [loss, signal, tokens, FLOPs]: one all-reduce a step
        self._flag = torch.zeros(4, dtype=torch.float64, device=device)
        self.throughput = Throughput()
        self.log(self.describe())

    # ------------------------------------------------------------------------------------------------- setup
    def _set_threads(self) -> None:
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        elif self.device.type == "cpu" and self.info.enabled:
            # Several processes on one CPU must share its cores: OpenMP teams that oversubscribe them spin at
            # barriers while their partner threads are descheduled, and every op can take a whole time slice.
            local = int(os.environ.get("LOCAL_WORLD_SIZE", self.info.world_size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))

    def setup_data(self) -> ShardSet:
        """Token shards: rank 0 tokenizes a text file once; the others wait, then read the same shards."""
        if self.info.is_main:
            shards = prepare_data(self.cfg.data, self.out_dir, self.cfg.val_fraction)
        D.barrier(self.info)
        if not self.info.is_main:
            shards = prepare_data(self.cfg.data, self.out_dir, self.cfg.val_fraction)
        return shards

    def resolve_model_config(self) -> GPTConfig:
        """The model's config: the run's, with the tokenizer's vocabulary size."""
        return replace(self.cfg.model, vocab_size=self.tokenizer.vocab_size)

    def build_loader(self) -> Any:
        """The training batches of this process: any object with next_batch(), state_dict(), load_state_dict()."""
        cfg, info = self.cfg, self.info
        return TokenLoader(
            self.shards.train, cfg.batch_size, self.block, seed=cfg.seed, rank=info.rank, world_size=info.world_size
        )

    def model_flops_per_token(self) -> float:
        """Training FLOPs per token for MFU (`GPT.flops_per_token`); a stage that skips part of the model on some
        tokens counts only what it computes, so its MFU stays a share of the peak (<= 1)."""
        return self.raw.flops_per_token(self.block)

    def measure_val_bytes(self) -> float:
        """UTF-8 bytes per validation token, which turns val loss into bits per byte."""
        return bytes_per_token(self.val, token_byte_lengths(self.tokenizer))

    def build_model(self) -> nn.Module:
        """The unwrapped model: the checkpoint's on resume (its weights are restored here, before wrapping),
        else a fresh one from the same seed on every rank, so every replica / shard starts from the same weights."""
        torch.manual_seed(self.cfg.seed)
        np.random.seed(self.cfg.seed)
        if self.resume_from is None:
            with torch.device(self.device):
                return GPT(self.model_config)
        model, _, _ = load_checkpoint(self.resume_from, device=self.device)
        if model.config != self.model_config:
            raise ResumeError(
                f"{self.resume_from}: its model config differs from this run's (model.* cannot change on resume)"
            )
        return model.train()

    def _resolve_precision(self, saved: dict[str, Any] | None) -> str:
        """The compute precision; a resumed "auto" run keeps the one it started with (the scaler and autocast
        are built from it before the rest of the saved state loads)."""
        kept = saved.get("precision") if saved is not None and self.cfg.precision == "auto" else None
        # Only rank 0 measures (the others would time steps on the cores it is timing on); its choice is broadcast.
        measure = self._measure_precision if self.info.is_main else None
        precision = kept or resolve_precision(self.cfg.precision, self.device, measure)
        precision = D.broadcast_object(precision, self.info)
        if self.device.type == "cuda" and precision == "fp32":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 storage, TF32 tensor-core matmuls (as nanoGPT)
            torch.backends.cudnn.allow_tf32 = True
        return precision

    def probe_shape(self) -> tuple[int, int]:
        """(rows, width) of a typical micro-batch: the step `precision=auto` times on a CPU where bf16 may or may
        not pay (`_measure_precision`)."""
        return self.cfg.batch_size, self.block

    def _measure_precision(self) -> str:
        """fp32 or bf16 autocast, whichever runs a forward and backward of this model on a micro-batch of random
        tokens (`probe_shape`) clearly faster (`faster_precision`); the times go into the describe() line."""
        rows, width = self.probe_shape()
        seconds = time_training_step(self.raw, rows, width, self.device)
        fp32_ms, bf16_ms = seconds["fp32"] * 1e3, seconds["bf16"] * 1e3
        self.precision_note = (
            f" (auto: a {rows} x {width} step took {fp32_ms:.1f} ms in fp32, {bf16_ms:.1f} ms in bf16)"
        )
        return faster_precision(seconds)

    def build_val_batches(self) -> list[Batch]:
        """eval_batches optimizer-step batches (batch_size x world_size x accum windows each), so a run's val loss
        does not depend on how its global batch is split over processes and micro-steps."""
        cfg = self.cfg
        micro_batches_per_step = self.info.world_size * self.accum
        global_batch = cfg.batch_size * micro_batches_per_step
        self.n_val = min(cfg.eval_batches, count_windows(self.shards.val, self.block) // global_batch)
        if self.n_val < 1:
            raise ValueError(
                f"the validation shards hold fewer than one global batch ({global_batch}) of windows of "
                f"{self.block + 1} tokens; give more validation data, a larger val_fraction, or a smaller "
                "batch_size / block_size"
            )
        if self.n_val < cfg.eval_batches:
            self.log(
                f"note: the validation split holds only {self.n_val} of eval_batches={cfg.eval_batches} "
                "batches; using those"
            )
        return list(val_batches(self.shards.val, cfg.batch_size, self.block, self.n_val * micro_batches_per_step))

    def _open_run_files(self) -> MetricsLog | None:
        """Rank 0 writes the resolved config and opens metrics.jsonl (on resume truncated to the checkpoint's
        step: two ranks doing so at once could race). Done only once a resume has loaded, so that a failed
        resume leaves the run directory as it was."""
        if not self.info.is_main:
            return None
        write_resolved_config(self.run_config, self.out_dir, self.stage_name)
        resume_step = self.progress.step if self.resume_from is not None else None
        return MetricsLog(self.out_dir, resume_step=resume_step, tensorboard=self.cfg.tensorboard)

    def describe(self) -> str:
        """The one line that says what is about to train, on what, how."""
        cfg, info = self.cfg, self.info
        return (
            f"model: {cfg.preset} with {self.raw.num_params():,} parameters, vocab {self.tokenizer.vocab_size}, "
            f"context {self.block}; data: {self.loader.windows.total:,} train windows, {self.n_val} val batches; "
            f"device {self.device} x {info.world_size}{' (' + cfg.parallel + ')' if info.enabled else ''}, "
            f"{self.precision}{self.precision_note}{', compiled' if cfg.compile else ''}; "
            f"{self.tokens_per_step:,} tokens/step "
            f"({self.accum} micro-step{'s' if self.accum > 1 else ''})"
            + (f"; resuming at step {self.progress.step}" if self.resume_from is not None else "")
        )

    # ------------------------------------------------------------------------------------------ resume state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume restores, besides the model's weights (those go into the model checkpoint, which
        `build_model` loads). A collective: every rank calls it; rank 0 gets the full optimizer states.
        "precision" and "world_size" are read back at setup (`_resolve_precision`, `load_state_dict`'s RNG)."""
        optimizers = full_optimizer_states(self.raw, self.optimizers)
        rngs = D.all_gather_object(rng_state(), self.info)
        return {
            **self.progress.state_dict(),
            "loader": self.loader.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rngs,
            "optimizers": optimizers,
            "precision": self.precision,
            "world_size": self.info.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` gave (optimizer states as full state dicts)."""
        load_optimizer_states(self.raw, self.optimizers, state["optimizers"])
        try:
            self.loader.load_state_dict(state["loader"])
        except ValueError as e:
            raise ResumeError(f"{self.resume_from or 'trainer state'}: {e}") from e
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]  # one per rank; a run resumed on another world size seeds every rank from rank 0's
        set_rng_state(rngs[self.info.rank] if len(rngs) == self.info.world_size else rngs[0])
        self.progress.load_state_dict(state)

    def _read_resume_state(self, saved: dict[str, Any]) -> dict[str, Any]:
        """trainer_state.json plus the optimizer tensors beside it, as `load_state_dict` takes them."""
        assert self.resume_from is not None
        tensors = read_optimizer_tensors(self.resume_from, saved.get("optimizer_sha256"))
        return {**saved, "optimizers": unflatten_optimizer_states(tensors, saved["optimizers"])}

    def save(self, reason: str) -> Path | None:
        """A checkpoint of the model and `state_dict()` (a collective); rank 0 writes it and returns its path."""
        model_state = self.checkpoint_model_state()
        state = self.state_dict()
        path = None
        if self.info.is_main:
            p = self.progress
            tensors, optimizer_meta = flatten_optimizer_states(state["optimizers"])
            config = to_dict(self.run_config)
            state = {**state, "optimizers": optimizer_meta, "reason": reason, "train_config": config}
            meta = {
                "train": config,
                "step": p.step,
                "val_loss": p.val_loss,
                "val_bpb": p.val_bpb,
                "default_prompt": self.default_prompt(),
            }
            path = write_checkpoint(
                self.out_dir,
                p.step,
                lambda d: self.write_model(d, meta, model_state),
                state,
                tensors,
            )
            prune(self.out_dir, self.cfg.keep_last, p.best_step)
        D.barrier(self.info)
        return path

    def default_prompt(self) -> str:
        """The prompt the playground offers for this model: the config's, else its training data's first words."""
        named = getattr(self.cfg, "default_prompt", None)  # post-training configs have none
        if named is not None:
            return named
        # a post-training subclass's data is records, not token shards: it offers no opening words
        return first_document_opening(self.shards.train, self.tokenizer) if isinstance(self.shards, ShardSet) else ""

    def checkpoint_model_state(self) -> dict[str, Tensor]:
        """The weights a checkpoint stores (a collective under FSDP): the model's full state dict."""
        return full_model_state(self.raw, self.fsdp)

    def write_model(self, directory: Path, meta: dict[str, Any], model_state: dict[str, Tensor]) -> None:
        """Write the model part of a checkpoint into `directory` (rank 0)."""
        save_checkpoint(directory, self.raw, self.tokenizer, meta, state_dict=model_state)

    # ------------------------------------------------------------------------------------------------ a step
    def next_batch(self) -> Batch:
        """The next micro-batch of this process, on its device."""
        x, y = self.loader.next_batch()
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def batch_work(self, batch: Any) -> tuple[int, float]:
        """(tokens, model FLOPs) of one micro-batch, which tokens/s and MFU count: here the whole (B, T) input
        (pretraining windows have no padding) at `flops_per_token`; a stage whose batches are ragged counts its
        real tokens and what its forward and backward compute on them."""
        n = batch[0].numel()
        return n, n * self.flops_per_token

    def forward_loss(self, batch: Batch) -> Tensor:
        """The (scalar) training loss of one micro-batch, under autocast."""
        x, y = batch
        with autocast(self.precision, self.device):
            _, loss = self.fwd(x, y)
        return loss

    def lr_multiplier(self) -> float:
        """The schedule's factor for the coming step; a time-boxed run anneals by the clock when that is ahead."""
        cfg, p = self.cfg, self.progress
        progress = (p.step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        if self.budget is not None:
            progress = max(progress, p.elapsed / self.budget)
        return lr_multiplier(
            cfg.schedule,
            p.step,
            progress,
            warmup=cfg.warmup_steps,
            min_ratio=cfg.min_lr_ratio,
            decay_fraction=cfg.decay_fraction,
        )

    def train_step(self) -> StepResult:
        """One optimizer step: accumulate gradients over the micro-batches (syncing them across processes on the
        last only), unscale and clip, check the loss, then step every optimizer and the loss scaler."""
        set_lr(self.optimizers, self.lr_multiplier())
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        tokens, flops = 0, 0.0
        for micro in range(self.accum):
            batch = self.next_batch()
            work = self.batch_work(batch)
            tokens, flops = tokens + work[0], flops + work[1]
            with D.grad_sync(self.module, self.cfg.parallel, sync=micro == self.accum - 1):
                loss = self.forward_loss(batch)
                self.scaler.scale(loss / self.accum).backward()
            loss_sum += loss.detach()
        for opt in self.optimizers:
            self.scaler.unscale_(opt)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip or math.inf)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        self._flag[0] = loss_sum / self.accum
        self._flag[1] = 1.0 if self.signals.caught is not None else 0.0
        self._flag[2], self._flag[3] = tokens, flops
        D.all_reduce_sum(self._flag, self.info)
        loss = float(self._flag[0]) / self.info.world_size
        self.check_loss(loss)
        for opt in self.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        # torch's fused CPU AdamW writes the weights without bumping their version counters, and the CPU decode
        # path's packed copies (`cpu_fast`) are keyed on them: without this, a policy sampled between steps (kiln
        # rl, the trainer's samples) decoded with the weights it started from.
        torch.autograd.graph.increment_version(self.params)
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        return StepResult(loss, norm, float(self._flag[1]) > 0, int(self._flag[2]), float(self._flag[3]))

    def check_loss(self, loss: float) -> None:
        """Raise before the optimizer step, so no bad update is applied and no bad checkpoint written."""
        cfg, p = self.cfg, self.progress
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss} at step {p.step + 1}; stopped before applying the update. The last good "
                f"checkpoint is in {cfg.out_dir}; lower the learning rate (lr={cfg.lr}) or use grad_clip.",
                p.step,
            )
        if cfg.loss_spike_factor and p.loss_ema is not None and loss > cfg.loss_spike_factor * p.loss_ema:
            raise TrainingDiverged(
                f"loss spiked to {loss:.4f} at step {p.step + 1}, over {cfg.loss_spike_factor}x its running "
                f"average {p.loss_ema:.4f}; stopped before applying the update. The last good checkpoint is in "
                f"{cfg.out_dir}.",
                p.step,
            )

    # ------------------------------------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train until max_steps, max_minutes or a signal; evaluate, log and checkpoint on schedule."""
        cfg, p = self.cfg, self.progress
        t0 = time.perf_counter() - p.elapsed
        try:
            with self.signals, self._progress_bar() as self.bar:
                while p.step < cfg.max_steps:
                    t_step = time.perf_counter()
                    result = self.train_step()
                    self._count_step(result, time.perf_counter() - t_step)
                    p.elapsed = time.perf_counter() - t0
                    out_of_time = self.budget is not None and p.elapsed > self.budget
                    last = p.step >= cfg.max_steps or out_of_time or result.stop
                    self._show_progress(result.loss)
                    # A signal stop skips the off-schedule evaluation, so a resumed run logs exactly what an
                    # uninterrupted one does.
                    evaluated = p.step % cfg.eval_interval == 0 or (last and not result.stop)
                    if evaluated:
                        self.on_eval()
                    if evaluated or p.step % cfg.log_interval == 0:
                        self.on_log(result, evaluated)
                    if p.step % self.checkpoint_every == 0 or last:
                        self.on_checkpoint("signal" if result.stop else ("end" if last else "interval"))
                    if result.stop:
                        self.on_signal_stop()
                        break
                    if out_of_time:
                        break
        finally:
            if self.metrics is not None:
                self.metrics.close()
        return self.summary()

    def _progress_bar(self) -> Any:
        return progress_bar(
            total=self.cfg.max_steps,
            initial=self.progress.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0,
            disable=not self.info.is_main,
        )

    def _count_step(self, result: StepResult, seconds: float) -> None:
        p, loss = self.progress, result.loss
        p.step += 1
        p.tokens += result.tokens
        p.train_loss = loss
        if p.step > self.cfg.warmup_steps:
            p.loss_ema = loss if p.loss_ema is None else 0.9 * p.loss_ema + 0.1 * loss
        # The first step pays for compilation and warm-up: the run's rate leaves it out.
        self.throughput.add(result.tokens, seconds, warm=p.step > 1 or self.resume_from is not None, flops=result.flops)

    def _show_progress(self, loss: float) -> None:
        p = self.progress
        if self.budget is not None:
            # A time-boxed run ends when the clock does: size the bar (and so its ETA) by the steps that fit.
            fit = p.step + (self.budget - p.elapsed) * p.step / max(p.elapsed, 1e-9)
            self.bar.total = max(p.step, min(self.cfg.max_steps, int(fit)))
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{self.throughput.window_rate():,.0f}")

    # ------------------------------------------------------------------------------------------------ hooks
    def evaluate_loss(self) -> float:
        """Mean validation loss over the fixed val batches (a collective)."""
        return evaluate(self.raw, self.val, self.info, self.device, self.precision, self.fsdp)

    def on_eval(self) -> None:
        p = self.progress
        p.val_loss = self.evaluate_loss()
        p.val_bpb = p.val_loss / math.log(2) / self.val_bytes_per_token
        if p.val_loss < p.best_val:
            p.best_val, p.best_step = p.val_loss, p.step
        every = self.cfg.eval_task_interval
        if self.cfg.eval_tasks and self.info.is_main and (every == 0 or p.step % every == 0):
            self.raw.eval()
            with torch.no_grad():
                self.task_scores = task_scorer()(self.raw, self.tokenizer, self.cfg.eval_tasks)
            self.raw.train()
        if self.info.is_main:
            self.bar.write(
                f"step {p.step}: train {p.train_loss:.4f}  val {p.val_loss:.4f}  ({p.val_bpb:.3f} bits/byte)"
            )

    def on_log(self, result: StepResult, evaluated: bool) -> None:
        """A metrics.jsonl line (rank 0); starts a new throughput window."""
        p = self.progress
        tok_s = self.throughput.window_rate()
        world = self.info.world_size
        record = {
            "step": p.step,
            "train_loss": round(result.loss, 6),
            "lr": self.optimizers[-1].param_groups[0]["lr"],
            "grad_norm": round(float(result.grad_norm), 5),
            "tokens_per_s": round(tok_s, 1),
            "mfu": round(self.throughput.window_flop_rate() / (self.peak * 1e12 * world), 5) if self.peak else None,
            "elapsed_s": round(p.elapsed, 2),
            "tokens": p.tokens,
        }
        record.update(self.step_record())
        if evaluated:
            record.update(self.eval_record())
            record.update({f"task/{k}": round(v, 6) for k, v in self.task_scores.items()})
            self.task_scores = {}
        if self.metrics is not None:
            self.metrics.write(record)
        self.throughput.new_window()

    def step_record(self) -> dict[str, float]:
        """What a subclass adds to every metrics.jsonl line (e.g. DPO's rewards); nothing here."""
        return {}

    def eval_record(self) -> dict[str, float]:
        """What an evaluation adds to its metrics.jsonl line."""
        p = self.progress
        return {"val_loss": round(p.val_loss, 6), "val_bpb": round(p.val_bpb, 6)}

    def on_checkpoint(self, reason: str) -> None:
        self.last_checkpoint = self.save(reason) or self.last_checkpoint

    def on_signal_stop(self) -> None:
        self.interrupted = self.signals.caught or signal.SIGTERM  # another rank may have caught it
        self.log(
            f"\nstopped by signal at step {self.progress.step}; checkpoint saved. "
            f"Resume: kiln {self.stage_name} --resume {self.out_dir}"
        )

    # ------------------------------------------------------------------------------------------------ the end
    def sample_text(self) -> str:
        """A sample from the trained model (rank 0, unsharded models only, not after a signal)."""
        if not (self.cfg.sample_tokens and self.info.is_main and not self.fsdp and self.interrupted is None):
            return ""
        n = self.cfg.sample_tokens
        params = SamplingParams(
            temperature=0.8, top_k=50, max_new_tokens=n, seed=self.cfg.seed,
            stop_token_ids=end_of_text_ids(self.tokenizer),
        )  # fmt: skip
        self.raw.eval()
        # Sampling a few hundred tokens takes seconds on a CPU: a counter says why the run has not ended yet.
        text = []
        with progress_bar(total=n, desc=f"sampling {n} tokens", unit="tok", leave=False) as bar:
            for ev in stream(self.raw, start_ids(self.tokenizer), params, tokenizer=self.tokenizer):
                text.append(ev.text)
                bar.update(1)
        return "".join(text)

    def summary(self) -> dict[str, Any]:
        p = self.progress
        sample = self.sample_text()
        return {
            "steps": p.step,
            "tokens": p.tokens,
            "train_loss": p.train_loss,
            "val_loss": p.val_loss,
            "best_val_loss": p.best_val,
            "val_bpb": p.val_bpb,
            "tokens_per_s": self.throughput.rate(),
            "elapsed_s": time.perf_counter() - self.t_start,
            "out_dir": str(self.out_dir),
            "is_main": self.info.is_main,
            "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "precision": self.precision,
            "interrupted": self.interrupted,
            "sample": sample,
        }
