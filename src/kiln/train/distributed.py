"""Data-parallel training under torchrun: process group setup, DDP / FSDP2 wrapping, small collectives.

torchrun starts one process per device and sets RANK, LOCAL_RANK and WORLD_SIZE; without them this is a
single process and every helper here is a cheap no-op. NCCL moves tensors between GPUs; gloo does the same
between CPU processes, so the tests run real multi-process training on a laptop.

- DDP keeps a full replica per process and all-reduces gradients during backward.
- FSDP2 (`fully_shard`) shards parameters, gradients and optimizer states over processes, all-gathering
  each block's weights just before it runs: memory per process falls by the world size.
Either way, micro-steps before the last in an accumulation window skip the gradient sync (each process
accumulates locally) and the final micro-step syncs the sum once.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from kiln.model.device import resolve_device


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = Dist(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world)
    device = resolve_device(device_name)  # device=cuda without CUDA: one line naming the setting
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return info, device


def shutdown() -> None:
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: nn.Module, kind: str, info: Dist, device: torch.device) -> nn.Module:
    """The module to run forward/backward through: the model itself, DDP around it, or the model sharded
    in place by FSDP2 (each block a unit, then the root for embeddings, final norm and head)."""
    if not info.enabled:
        return model
    if kind == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def grad_sync(module: nn.Module, kind: str, sync: bool) -> contextlib.AbstractContextManager:
    """Enable or skip the gradient all-reduce of the coming backward (skipped on non-final micro-steps)."""
    if kind == "fsdp" and hasattr(module, "set_requires_gradient_sync"):
        module.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if not sync and hasattr(module, "no_sync"):
        return module.no_sync()
    return contextlib.nullcontext()


def all_reduce_mean(t: Tensor, info: Dist) -> Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world_size
    return t


def all_reduce_sum(t: Tensor, info: Dist) -> Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_object(obj: object, info: Dist) -> object:
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: object, info: Dist) -> list:
    if not info.enabled:
        return [obj]
    out: list = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
