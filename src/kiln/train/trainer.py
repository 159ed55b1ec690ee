"""The training loop: sample a batch, forward, backward, clip, AdamW step, repeat; evaluate and checkpoint.

This is the small single-process loop that the char-level quick start uses; it writes the same
checkpoint format (`kiln.train.checkpoint`) that `kiln generate` and `kiln serve` read.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from kiln.config import to_dict
from kiln.generate import SamplingParams, generate
from kiln.model import GPT
from kiln.train.checkpoint import save_checkpoint
from kiln.train.config import TrainConfig
from kiln.train.data import TextData, read_text
from kiln.train.schedule import cosine_lr


def resolve_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def make_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only: decaying norms' gains and biases pulls them toward zero
    for no regularisation benefit (the GPT-2 / nanoGPT convention)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda" or None)


@torch.no_grad()
def evaluate(model: GPT, data: TextData, cfg: TrainConfig, device: torch.device) -> float:
    """Mean val loss over a fixed set of windows (same seed every time, so evaluations are comparable)."""
    model.eval()
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    losses = []
    for _ in range(cfg.eval_batches):
        x, y = data.batch("val", cfg.batch_size, model.config.block_size, gen)
        losses.append(model(x.to(device), y.to(device))[1].item())
    model.train()
    return float(np.mean(losses))


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run `cfg` to completion; returns a summary (final losses, paths, a sample)."""
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)

    data = TextData(read_text(cfg.data), cfg.val_fraction)
    tokenizer = data.tokenizer
    model_cfg = replace(cfg.model, vocab_size=tokenizer.vocab_size)
    model = GPT(model_cfg).to(device)
    optimizer = make_optimizer(model, cfg, device)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.jsonl"
    metrics_path.write_text("")
    log(
        f"model: {cfg.preset} with {model.num_params():,} parameters, vocab {tokenizer.vocab_size}, "
        f"context {model_cfg.block_size}; data: {len(data.train):,} train / {len(data.val):,} val tokens; "
        f"device {device}"
    )

    gen = torch.Generator().manual_seed(cfg.seed)
    tokens_per_step = cfg.batch_size * model_cfg.block_size
    start = time.perf_counter()
    best_val, val_loss, train_loss = math.inf, math.nan, math.nan
    bar = tqdm(total=cfg.max_steps, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)
    step = 0
    stop = False
    while not stop:
        elapsed = time.perf_counter() - start
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        if cfg.max_minutes is not None:
            progress = max(progress, elapsed / (cfg.max_minutes * 60))
        lr = cosine_lr(step, progress, peak=cfg.lr, warmup=cfg.warmup_steps, min_ratio=cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = data.batch("train", cfg.batch_size, model_cfg.block_size, gen)
        _, loss = model(x.to(device), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf).item()
        train_loss = loss.item()
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"loss became {train_loss} at step {step}; lower lr (now {lr:.2e})")
        optimizer.step()
        step += 1
        elapsed = time.perf_counter() - start
        tok_s = step * tokens_per_step / elapsed
        if cfg.max_minutes is not None:
            # A time-boxed run ends when the clock does: size the bar (and so its ETA) by the steps that fit.
            fit = step + (cfg.max_minutes * 60 - elapsed) * step / elapsed
            bar.total = max(step, min(cfg.max_steps, int(fit)))
        bar.update(1)
        bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tok_s:,.0f}")
        out_of_time = cfg.max_minutes is not None and elapsed > cfg.max_minutes * 60
        stop = step >= cfg.max_steps or out_of_time
        if step % cfg.eval_interval == 0 or stop:
            val_loss = evaluate(model, data, cfg, device)
            bpb = val_loss / math.log(2) / data.bytes_per_token
            record = {
                "step": step,
                "train_loss": round(train_loss, 5),
                "val_loss": round(val_loss, 5),
                "val_bpb": round(bpb, 5),
                "lr": lr,
                "grad_norm": round(grad_norm, 4),
                "tokens_per_s": round(tok_s, 1),
                "elapsed_s": round(elapsed, 2),
            }
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            bar.write(f"step {step}: train {train_loss:.4f}  val {val_loss:.4f}  ({bpb:.3f} bits/byte)")
            best_val = min(best_val, val_loss)
            meta = {"train": to_dict(cfg), "step": step, "val_loss": val_loss, "val_bpb": bpb}
            save_checkpoint(out_dir, model, tokenizer, meta)
    bar.close()

    sample = ""
    if cfg.sample_tokens:
        prompt = tokenizer.encode("\n")
        params = SamplingParams(temperature=0.8, top_k=50, max_new_tokens=cfg.sample_tokens, seed=cfg.seed)
        sample = generate(model, prompt, params, tokenizer=tokenizer).text
    return {
        "steps": step,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "best_val_loss": best_val,
        "val_bpb": val_loss / math.log(2) / data.bytes_per_token,
        "elapsed_s": time.perf_counter() - start,
        "out_dir": str(out_dir),
        "sample": sample,
    }
