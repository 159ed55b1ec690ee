"""`kiln plan`: compute-optimal sizes, memory per device, steps, wall-clock and cost for a budget or a model.

Everything is arithmetic on kiln's exact counters (parameters, FLOPs per token) taken on the meta device, so a
plan for any preset, 405B included, takes milliseconds once torch is imported.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict

from kiln.plan.config import PlanConfig, PlanError
from kiln.plan.depth import BATCH_TOKENS
from kiln.plan.gpus import GPUS, get_gpu
from kiln.plan.laws import LAWS, LOSS_LAWS, AllocationLaw
from kiln.plan.memory import PRECISIONS, STRATEGIES, ModelCounts, device_memory, min_gpus
from kiln.plan.shape import shape_for
from kiln.plan.summary import PlanSummary

ZERO = {"ddp": 0, "zero1": 1, "zero2": 2, "fsdp": 3}
TP_DEGREES = (1, 2, 4, 8)


def budget_flops(config: PlanConfig) -> tuple[float | None, str]:
    """The budget in FLOPs and where it came from (None: no budget given, the model and tokens set it)."""
    gpu = get_gpu(config.gpu)
    per_gpu_hour = gpu.peak_tflops(config.precision) * 1e12 * config.mfu * 3600
    if config.flops is not None:
        return config.flops, "flops"
    if config.gpu_hours is not None:
        return config.gpu_hours * per_gpu_hour, f"{config.gpu_hours:,.0f} GPU-hours of {gpu.name} at MFU {config.mfu}"
    if config.money is not None:
        hours = config.money / config.price_per_gpu_hour
        return (
            hours * per_gpu_hour,
            f"{config.money:,.0f} at {config.price_per_gpu_hour}/GPU-hour = {hours:,.0f} GPU-hours",
        )
    return None, "model x tokens"


def law_rows(flops: float) -> list[dict]:
    """Compute-optimal N and D under every law at `flops` (C = 6ND), with the loss the two fitted laws predict."""
    rows = []
    for key, law in LAWS.items():
        n, d = law.optimal(flops)
        row = {"law": key, "name": law.name, "source": law.source, "params": n, "tokens": d, "tokens_per_param": d / n}
        for loss_law in LOSS_LAWS:
            row[f"loss {loss_law.name}"] = loss_law.loss(n, d)
        rows.append(row)
    return rows


def _optimal_tokens_for(params: float, law_key: str) -> float:
    """The compute-optimal token count for a model of `params` under a law (the inverse of its allocation)."""
    law = LAWS[law_key]
    if isinstance(law, AllocationLaw):
        return law.optimal(law.flops_for(params))[1]
    # LossLaw: N = G (C/6)^a and D = G^-1 (C/6)^b; solve for C/6 from N, bisecting in log space.
    lo, hi = 1.0, 1e40
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if law.optimal(6 * mid)[0] < params else (lo, mid)
    return law.optimal(6 * lo)[1]


def memory_table(counts: ModelCounts, config: PlanConfig, capacity: float, seq_len: int) -> list[dict]:
    """Per-device bytes at config.gpus and the fewest GPUs that fit, for every precision, strategy, tensor-parallel
    degree and checkpointing choice."""
    rows = []
    for precision in PRECISIONS:
        for tp in TP_DEGREES:
            for zero, strategy in STRATEGIES.items():
                for ckpt in (False, True):
                    kw = dict(precision=precision, micro_batch=config.micro_batch, seq_len=seq_len,
                              checkpointing=ckpt, flash=config.flash)  # fmt: skip
                    dp = config.gpus // tp if config.gpus % tp == 0 else None
                    mem = device_memory(counts, zero=zero, tp=tp, dp=dp, **kw) if dp else None
                    rows.append({
                        "precision": precision, "tp": tp, "strategy": strategy, "zero": zero, "checkpointing": ckpt,
                        **({k: v for k, v in asdict(mem).items()} | {"total": mem.total} if mem else {}),
                        "fits": bool(mem and mem.total <= capacity),
                        "min_gpus": min_gpus(counts, capacity, zero=zero, tp=tp, **kw),
                    })  # fmt: skip
    return rows


def _nearest_fit(counts: ModelCounts, config: PlanConfig, seq_len: int) -> str:
    """What would fit: checkpointing and micro_batch 1, a larger GPU of the table, or a shallower model."""

    def fits(gpu_memory_gb: float, c: ModelCounts) -> int | None:
        cap = gpu_memory_gb * 1e9 * config.memory_headroom
        got = [min_gpus(c, cap, zero=3, tp=tp, precision=config.precision, micro_batch=1, seq_len=seq_len,
                        checkpointing=True, flash=True) for tp in TP_DEGREES]  # fmt: skip
        return min((g for g in got if g), default=None)

    for gpu in sorted(GPUS.values(), key=lambda g: g.memory_gb):
        if gpu.memory_gb > get_gpu(config.gpu).memory_gb and (n := fits(gpu.memory_gb, counts)):
            return f"gpu={gpu.name} ({gpu.memory_gb:g} GB) fits it on {n} GPUs with FSDP and checkpointing"
    from kiln.plan.depth import depth_shape

    for depth in range(counts.config.n_layer, 0, -1):
        cfg = depth_shape(depth, vocab_size=counts.config.vocab_size, block_size=seq_len).model
        small = ModelCounts.of(cfg)
        if (n := fits(get_gpu(config.gpu).memory_gb, small)) and small.params < counts.params:
            return (
                f"depth={depth} ({small.params / 1e9:.2f}B parameters) fits on {n} {config.gpu} with FSDP and "
                "checkpointing"
            )
    return "a shorter seq_len"


def run(config: PlanConfig) -> PlanSummary:
    t0 = time.perf_counter()
    config.validate()
    gpu = get_gpu(config.gpu)
    flops, budget_from = budget_flops(config)
    laws = law_rows(flops) if flops is not None else []
    target = LAWS[config.law].optimal(flops)[0] if flops is not None else None
    label, model_cfg, depth, rule = shape_for(preset=config.preset, depth=config.depth, vocab_size=config.vocab_size,
                                              seq_len=config.seq_len, target_params=target)  # fmt: skip
    seq_len = model_cfg.block_size
    counts = ModelCounts.of(model_cfg, seq_len)
    fpt = counts.flops_per_token
    if config.tokens is not None:
        tokens = config.tokens
        if flops is None:
            flops, budget_from = fpt * tokens, f"{label} x {tokens:.3g} tokens"
            laws = law_rows(flops)
    elif flops is not None:
        tokens = flops / fpt
    else:
        tokens = _optimal_tokens_for(counts.params, config.law)
        flops, budget_from = fpt * tokens, f"{label} x its compute-optimal tokens under {config.law}"
        laws = law_rows(flops)

    batch_tokens = config.batch_tokens or rule.get("batch_tokens", BATCH_TOKENS)
    step_flops = fpt * batch_tokens
    if flops < step_flops:
        fewer = (int(flops // fpt) // seq_len) * seq_len
        alt = (
            f"batch_tokens={fewer} (one step, {fewer // seq_len} sequences)"
            if fewer >= seq_len
            else (f"a budget of at least {fpt * seq_len:.3g} FLOPs (one sequence of {seq_len} tokens)")
        )
        raise PlanError(
            f"the budget ({flops:.3g} FLOPs) is smaller than one optimizer step of {label} ({batch_tokens:,} tokens "
            f"x {fpt:.3g} FLOPs/token = {step_flops:.3g} FLOPs); nearest feasible: {alt}"
        )
    # A budget buys whole steps (never more than it pays for); a token count is reached (never fewer tokens).
    steps = math.ceil(tokens / batch_tokens) if config.tokens is not None else max(1, int(tokens // batch_tokens))

    capacity = gpu.memory_gb * 1e9 * config.memory_headroom
    table = memory_table(counts, config, capacity, seq_len)
    chosen = next(r for r in table if r["precision"] == config.precision and r["tp"] == config.tensor_parallel
                  and r["zero"] == ZERO[config.strategy] and r["checkpointing"] == config.checkpointing)  # fmt: skip
    if not any(r["min_gpus"] for r in table if r["precision"] == config.precision):
        raise PlanError(
            f"{label} ({counts.params / 1e9:.3g}B parameters, seq_len {seq_len}, micro_batch {config.micro_batch}) "
            f"fits on no number of {gpu.name} ({gpu.memory_gb:g} GB x {config.memory_headroom} usable) at "
            f"{config.precision}, even with FSDP, tensor_parallel=8 and activation checkpointing; nearest feasible: "
            + _nearest_fit(counts, config, seq_len)
        )

    run_flops = fpt * steps * batch_tokens
    rate = gpu.peak_tflops(config.precision) * 1e12 * config.mfu
    gpu_hours = run_flops / rate / 3600
    summary = PlanSummary(
        budget_flops=flops,
        budget_from=budget_from,
        gpu=asdict(gpu),
        mfu=config.mfu,
        gpus=config.gpus,
        laws=laws,
        law=config.law,
        model={
            "label": label,
            "depth": depth,
            "params": counts.params,
            "non_embedding_params": counts.non_embedding,
            "n_layer": model_cfg.n_layer,
            "n_embd": model_cfg.n_embd,
            "n_head": model_cfg.n_head,
            "n_kv_head": model_cfg.kv_heads,
            "vocab_size": model_cfg.vocab_size,
            "seq_len": seq_len,
            "flops_per_token": fpt,
            "flops_per_token_6n": 6 * counts.params,
            **rule,
        },
        tokens=tokens,
        tokens_per_param=tokens / counts.params,
        tokens_per_non_embedding_param=tokens / counts.non_embedding,
        predicted_loss={law.name: law.loss(counts.params, tokens) for law in LOSS_LAWS},
        batch_tokens=batch_tokens,
        steps=steps,
        run_flops=run_flops,
        gpu_hours=gpu_hours,
        wall_clock_hours=gpu_hours / config.gpus,
        cost=gpu_hours * config.price_per_gpu_hour if config.price_per_gpu_hour else None,
        precision=config.precision,
        memory_capacity=capacity,
        chosen=chosen,
        memory=table,
        seconds=0.0,
    )
    summary.seconds = time.perf_counter() - t0
    if config.out_dir is not None:
        from kiln.stage import write_resolved_config

        config.out_dir.mkdir(parents=True, exist_ok=True)
        summary.write(config.out_dir / "plan.json")
        write_resolved_config(config, config.out_dir, "plan")
    return summary
