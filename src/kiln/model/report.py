"""`kiln model`: parameter counts, FLOPs per token and memory of model presets, computed on the meta device."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from kiln.stage import Summary


@dataclass
class ModelReportConfig:
    """Which presets to describe and in which precision to count their memory."""

    names: list[str] = field(default_factory=list)
    """Presets to show (empty: all of them)."""
    dtype: Literal["fp32", "bf16", "fp16"] = "bf16"
    """Precision of the weights, gradients and KV cache in the memory columns."""

    def validate(self) -> ModelReportConfig:
        from kiln.model.presets import PRESETS, unknown_preset

        unknown = [n for n in self.names if n not in PRESETS]
        if unknown:
            raise ValueError(unknown_preset(unknown[0]))
        return self


@dataclass
class ModelReportSummary(Summary):
    """One row per preset: sizes, compute and memory (bytes)."""

    dtype: str
    rows: list[dict]

    def render(self) -> str:
        def gib(n: int) -> str:
            return f"{n / 2**30:,.1f}"

        header = f"{'preset':<12} {'params':>16} {'non-embedding':>16} {'GFLOP/token':>12} "
        header += f"{'weights GiB':>12} {'train GiB':>10} {'KV GiB':>8}  description"
        lines = [f"memory in {self.dtype}; training = weights + grads + AdamW states + fp32 master; KV for 1 x context"]
        lines.append(header)
        for r in self.rows:
            lines.append(
                f"{r['name']:<12} {r['params']:>16,} {r['non_embedding']:>16,} {r['gflop_per_token']:>12,.2f} "
                f"{gib(r['weights']):>12} {gib(r['training_total']):>10} {gib(r['kv_cache']):>8}  {r['description']}"
            )
        return "\n".join(lines)


def run(config: ModelReportConfig) -> ModelReportSummary:
    import torch

    from kiln.model.presets import PRESETS, build

    config.validate()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[config.dtype]
    rows = []
    for name in config.names or list(PRESETS):
        model = build(name, device="meta")
        mem = model.memory_report(dtype=dtype)
        rows.append({
            "name": name,
            "params": model.num_params(),
            "non_embedding": model.num_params(non_embedding=True),
            "gflop_per_token": model.flops_per_token() / 1e9,
            "weights": mem["weights"],
            "training_total": mem["training_total"],
            "kv_cache": mem["kv_cache"],
            "description": PRESETS[name][0],
        })  # fmt: skip
    return ModelReportSummary(dtype=config.dtype, rows=rows)
