"""Accelerators `kiln plan` knows: memory and dense peak throughput (no 2:4 sparsity), from the vendors' data
sheets. fp32 training runs its matmuls as TF32 on the tensor cores where the GPU has them (PyTorch's
`allow_tf32`/`set_float32_matmul_precision("high")`), so the fp32 column is the dense TF32 peak."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPU:
    name: str
    memory_gb: float
    """Memory in GB (1e9 bytes), as sold."""
    tflops_fp32: float
    """Dense TF32 tensor-core peak (plain FP32 on GPUs without TF32)."""
    tflops_bf16: float
    """Dense BF16 peak (FP16 on V100, which has no BF16)."""
    tflops_fp8: float
    """Dense FP8 peak (= the BF16 peak on GPUs without FP8)."""

    def peak_tflops(self, precision: str) -> float:
        return {"fp32": self.tflops_fp32, "bf16": self.tflops_bf16, "fp8": self.tflops_fp8}[precision]


GPUS: dict[str, GPU] = {
    g.name: g
    for g in [
        # NVIDIA A100 data sheet (SXM): 312 TF BF16, 156 TF TF32 dense.
        GPU("A100-40GB", 40, 156, 312, 312),
        GPU("A100-80GB", 80, 156, 312, 312),
        # NVIDIA H100 data sheet: SXM 989 TF BF16 / 1979 FP8 / 494 TF32 dense; PCIe 756 / 1513 / 378.
        GPU("H100-SXM", 80, 494, 989, 1979),
        GPU("H100-PCIe", 80, 378, 756, 1513),
        # H200: the H100 SXM's compute with 141 GB of HBM3e.
        GPU("H200", 141, 494, 989, 1979),
        # B200 (HGX B200 per GPU): 2.25 PF BF16, 4.5 PF FP8, 1.1 PF TF32 dense; 180 GB.
        GPU("B200", 180, 1100, 2250, 4500),
        # AMD MI300X data sheet: 1307 TF BF16, 2615 FP8, 653 TF32 dense; 192 GB.
        GPU("MI300X", 192, 653, 1307, 2615),
        # L4: 121 TF BF16, 242 FP8, 60 TF32 dense; 24 GB.
        GPU("L4", 24, 60, 121, 242),
        # GeForce RTX 4090: 165 TF BF16 (FP32 accumulate), 330 FP8, 83 TF32 dense; 24 GB.
        GPU("RTX-4090", 24, 83, 165, 330),
        # V100 SXM2 32 GB: 125 TF FP16 tensor cores, 15.7 TF FP32, no BF16/FP8.
        GPU("V100-32GB", 32, 15.7, 125, 125),
    ]
}


def get_gpu(name: str) -> GPU:
    """The GPU called `name` (case-insensitive), or a ValueError listing the known ones."""
    for key, gpu in GPUS.items():
        if key.lower() == name.lower():
            return gpu
    raise ValueError(f"unknown gpu {name!r}; choose one of: {', '.join(GPUS)}")
