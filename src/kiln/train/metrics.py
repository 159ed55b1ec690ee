"""Run metrics: metrics.jsonl (one JSON object per line, flushed, so it can be read while training),
optional TensorBoard, and model FLOPs utilisation (MFU: achieved model FLOPs / the device's peak)."""

from __future__ import annotations

import json
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

# Dense (non-sparse) peak TFLOP/s by GPU name and compute dtype, from the vendors' datasheets. fp32 is the
# TF32 tensor-core figure where the GPU has one (kiln enables TF32 for fp32 runs on CUDA); longer names first.
_GPU_PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"bf16": 989.0, "fp16": 989.0, "fp32": 494.7}),
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0, "fp32": 378.0}),
    ("H100", {"bf16": 989.0, "fp16": 989.0, "fp32": 494.7}),
    ("A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 156.0}),
    ("L40S", {"bf16": 362.0, "fp16": 362.0, "fp32": 183.0}),
    ("L40", {"bf16": 181.0, "fp16": 181.0, "fp32": 90.5}),
    ("L4", {"bf16": 121.0, "fp16": 121.0, "fp32": 60.0}),
    ("A10", {"bf16": 125.0, "fp16": 125.0, "fp32": 62.5}),
    ("RTX 4090", {"bf16": 165.2, "fp16": 165.2, "fp32": 82.6}),
    ("RTX 3090", {"bf16": 71.0, "fp16": 71.0, "fp32": 35.6}),
]


@lru_cache(maxsize=4)
def measured_cpu_tflops(dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 0.2) -> float:
    """What this CPU sustains on a large matmul: a realistic ceiling for CPU MFU, where datasheet peaks
    (all cores at turbo, perfect vectorisation) are rarely published or reached. The fastest of the repetitions,
    not their mean: on a shared or throttled machine a slow moment during the probe lowered the ceiling, and
    training that ran in a faster moment then logged an MFU above 1 (seen: 1.06 on a 2-core VM). Its matrices come
    from a generator of their own: drawn from the global one, they shifted the dropout masks of the first run in a
    process (later runs hit the cache) and two runs of one seed with dropout differed."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    a @ b
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds or best == float("inf"):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def peak_tflops(device: torch.device, precision: str, override: float | None = None) -> float | None:
    """Per-process peak for MFU: the override, a datasheet figure for known GPUs, a measured matmul on CPU."""
    if override:
        return override
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for fragment, table in _GPU_PEAK_TFLOPS:
            if re.search(rf"\b{re.escape(fragment)}\b", name):
                return table[precision]
        return None
    if device.type == "cpu":
        return measured_cpu_tflops(torch.bfloat16 if precision == "bf16" else torch.float32)
    return None


class MetricsLog:
    """metrics.jsonl in the run directory, plus TensorBoard scalars when asked for."""

    def __init__(self, run_dir: Path, *, resume_step: int | None, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            self._truncate_after(resume_step)
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ValueError("tensorboard=true needs the tensorboard package: pip install tensorboard") from e
            # purge_step hides events at steps >= it: keep the checkpoint's own step, redo only later ones.
            purge = None if resume_step is None else resume_step + 1
            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)

    def _truncate_after(self, step: int) -> None:
        """A resumed run redoes the steps after its checkpoint: drop their old lines so each step appears once."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                continue
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
