"""`PlanSummary`: what `kiln plan` found, rendered as a few short tables."""

from __future__ import annotations

from dataclasses import dataclass

from kiln.stage import Summary


def _n(x: float) -> str:
    """1.23B, 456M, 7.8T: counts a person reads at a glance."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _gb(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e9:,.1f}"


def _count(x: float) -> str:
    """Whole numbers with thousands separators; small ones with three significant digits."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _hours(h: float) -> str:
    if h < 1 / 60:
        return f"{h * 3600:.2g} s"
    if h < 1:
        return f"{h * 60:.1f} min"
    if h < 48:
        return f"{h:.1f} h"
    return f"{h / 24:,.1f} days"


@dataclass
class PlanSummary(Summary):
    """A plan: the budget, the laws' optima, the chosen model, its memory, steps, time and cost (bytes in
    memory fields; GB below means 1e9 bytes)."""

    budget_flops: float
    budget_from: str
    gpu: dict
    mfu: float
    gpus: int
    laws: list[dict]
    law: str
    model: dict
    tokens: float
    tokens_per_param: float
    tokens_per_non_embedding_param: float
    predicted_loss: dict
    batch_tokens: int
    steps: int
    run_flops: float
    gpu_hours: float
    wall_clock_hours: float
    cost: float | None
    precision: str
    memory_capacity: float
    chosen: dict
    memory: list[dict]
    seconds: float

    def render(self) -> str:
        out = [f"budget: {self.budget_flops:.3g} FLOPs ({self.budget_from})", ""]
        out.append("compute-optimal (C = 6ND; N counts all parameters, embeddings included)")
        out.append(f"  {'law':<34} {'params':>8} {'tokens':>8} {'tok/param':>9} {'L Hoffmann':>10} {'L Besiroglu':>11}")
        for r in self.laws:
            losses = [v for k, v in r.items() if k.startswith("loss ")]
            mark = "*" if r["law"] == self.law else " "
            out.append(
                f" {mark}{r['name']:<34} {_n(r['params']):>8} {_n(r['tokens']):>8} {r['tokens_per_param']:>9.1f} "
                f"{losses[0]:>10.3f} {losses[1]:>11.3f}"
            )
        m = self.model
        out += ["", f"model: {m['label']}  {m['n_layer']} layers x {m['n_embd']} wide, {m['n_head']} heads "
                f"({m['n_kv_head']} kv), vocab {m['vocab_size']:,}, seq {m['seq_len']}"]  # fmt: skip
        out.append(
            f"  params {_n(m['params'])} ({_n(m['non_embedding_params'])} without embeddings); "
            f"{_n(self.tokens)} tokens = {self.tokens_per_param:.1f} per parameter "
            f"({self.tokens_per_non_embedding_param:.1f} per non-embedding parameter)"
        )
        out.append(f"  FLOPs/token {m['flops_per_token']:.4g} (6N = {m['flops_per_token_6n']:.4g}, the rest attention)")
        if "lr" in m:
            out.append(
                f"  depth rule: AdamW lr {m['lr']:.2e}, Muon lr {m['muon_lr']}, batch {m['batch_tokens']:,} tokens"
            )
        losses = ", ".join(f"{k}: {v:.3f}" for k, v in self.predicted_loss.items())
        out.append(f"  predicted loss (nats/token on MassiveText-like data): {losses}")
        g = self.gpu
        out += ["", f"memory per device, {self.precision}, {self.gpus} x {g['name']} "
                f"({g['memory_gb']:g} GB, {self.memory_capacity / 1e9:.0f} usable), GB; min GPUs: the fewest that fit, "
                "without / with activation checkpointing"]  # fmt: skip
        out.append(f"  {'tp':>2} {'strategy':<12} {'weights':>9} {'grads':>9} {'optim':>9} {'activ':>9} {'total':>9}"
                   f" {'ckpt act':>9} {'ckpt tot':>9} {'min GPUs':>8} {'ckpt min':>8}")  # fmt: skip
        rows = [r for r in self.memory if r["precision"] == self.precision]
        for plain, ckpt in zip(rows[0::2], rows[1::2], strict=True):
            out.append(
                f"  {plain['tp']:>2} {plain['strategy']:<12} {_gb(plain.get('weights')):>9} "
                f"{_gb(plain.get('gradients')):>9} "
                f"{_gb(plain.get('optimizer')):>9} {_gb(plain.get('activations')):>9} {_gb(plain.get('total')):>9} "
                f"{_gb(ckpt.get('activations')):>9} {_gb(ckpt.get('total')):>9} {plain['min_gpus'] or 'none':>8} "
                f"{ckpt['min_gpus'] or 'none':>8}"
            )
        c = self.chosen
        fits = "fits" if c["fits"] else f"does NOT fit (needs {c['min_gpus'] or 'more memory than any count of'} GPUs)"
        out.append(f"  chosen: {c['strategy']}, tp {c['tp']}, checkpointing {'on' if c['checkpointing'] else 'off'}: "
                   f"{_gb(c.get('total'))} GB per device, {fits}")  # fmt: skip
        out += [
            "",
            f"run: {self.steps:,} steps of {self.batch_tokens:,} tokens = {self.run_flops:.3g} FLOPs; "
            f"{_count(self.gpu_hours)} GPU-hours at MFU {self.mfu} = {_hours(self.wall_clock_hours)} on "
            f"{self.gpus} GPUs",
        ]
        if self.cost is not None:
            out.append(f"cost: {self.cost:,.0f}")
        out.append(f"(planned in {self.seconds * 1000:.0f} ms)")
        return "\n".join(out)
