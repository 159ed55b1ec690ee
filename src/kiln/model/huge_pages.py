"""A CPU model's weights in 2 MB pages (Linux transparent huge pages), for decoding.

Decoding streams every weight from memory once per token, and a weight in 4 KB pages costs a TLB miss every 4 KB:
a page walk, which in a virtual machine (nested page tables) is several more memory reads. PyTorch's allocator
hands out ordinary 4 KB pages where the kernel's transparent huge pages are in their usual `madvise` mode (the
default of most distributions: only memory a program asks for gets 2 MB pages). On a 2-core Xeon VM (AMX, THP
`madvise`), a plain sum over 512 MB read 22.7-23.3 GB/s in 4 KB pages and 28.8-29.0 GB/s in 2 MB pages, and gpt2
fp32 decoding went from 39.5 to 48.0 tokens/s at batch 1 and from 231 to 246 at batch 8 with nothing else changed
(docs/benchmarks.md). So before decoding, `move_parameters` copies each large parameter storage into anonymous
memory that is 2 MB-aligned and advised `MADV_HUGEPAGE`, and points the parameters at the copies.

What moves: every storage of at least `MIN_BYTES` behind a plain CPU parameter (not a DTensor or another
subclass), with its views and ties kept (a tied LM head still shares the embedding's storage); each copy is a
storage of its own (safetensors refuses storages shared by several tensors). The parameters stay the same objects,
so an optimizer that holds them goes on updating the moved weights. Copies are made in arenas of at most
`ARENA_BYTES`, each old storage freed as its arena is done, so a large model never needs twice its memory.
Where the kernel has no transparent huge pages (another OS, THP `never`), nothing moves.
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import sys
import weakref
from pathlib import Path

import torch
from torch import nn

enabled = True
"""Set False to keep weights where PyTorch put them (the decoding benchmark does, to show the difference)."""

PAGE = 2 << 20
"""A huge page on x86-64 Linux."""
MIN_BYTES = 1 << 20
"""Storages smaller than this stay put: norms and biases are read a few KB at a time, and a copy costs a 2 MB page."""
ARENA_BYTES = 256 << 20
"""The most copied at once before the old storages are released (a storage larger than this gets its own)."""
MADV_HUGEPAGE = 14  # linux/mman.h

_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_regions: list[tuple[int, int]] = []
"""(start, end) addresses of the memory this module mapped, sorted: how `is_huge` knows a storage is already moved."""


def available() -> bool:
    """Whether this process can ask for 2 MB pages: Linux with transparent huge pages in `always` or `madvise`."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mode = _THP.read_text()
    except OSError:
        return False
    return "[always]" in mode or "[madvise]" in mode


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _map(nbytes: int) -> tuple[mmap.mmap, int]:
    """An anonymous mapping with `nbytes` from a 2 MB boundary (the offset returned) on, advised MADV_HUGEPAGE before
    first touch, so the kernel backs it with 2 MB pages as it is written."""
    size = _round_up(max(nbytes, 1), PAGE)
    m = mmap.mmap(-1, size + PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    off = -addr % PAGE
    if _libc().madvise(ctypes.c_void_p(addr + off), ctypes.c_size_t(size), MADV_HUGEPAGE) != 0:
        raise OSError(ctypes.get_errno(), "madvise(MADV_HUGEPAGE) failed")
    region = (addr + off, addr + off + size)
    bisect.insort(_regions, region)
    # Forgotten when the mapping goes (its last tensor freed), so an address reused later is not taken for ours.
    weakref.finalize(m, _regions.remove, region)
    return m, off


def empty(nbytes: int) -> torch.Tensor:
    """`nbytes` of uninitialised uint8 memory in 2 MB pages (`_map`); the tensor keeps the mapping alive."""
    m, off = _map(nbytes)
    return torch.frombuffer(m, dtype=torch.uint8, count=nbytes, offset=off)


def is_huge(storage: torch.UntypedStorage) -> bool:
    """Whether `storage` lies in memory `empty` mapped."""
    ptr = storage.data_ptr()
    i = bisect.bisect_right(_regions, (ptr, float("inf"))) - 1
    return i >= 0 and _regions[i][0] <= ptr < _regions[i][1]


def _movable(p: torch.Tensor) -> bool:
    return type(p.data) is torch.Tensor and p.device.type == "cpu" and p.untyped_storage().nbytes() >= MIN_BYTES


def move_parameters(model: nn.Module) -> int:
    """Copy `model`'s large parameter storages into 2 MB pages (see the module docstring); returns the bytes moved
    (0 where nothing moves: unavailable, disabled, already moved, or no storage large enough)."""
    if not (enabled and available()):
        return 0
    users: dict[int, list[nn.Parameter]] = {}
    storages: dict[int, torch.UntypedStorage] = {}
    for p in model.parameters():
        if not _movable(p):
            continue
        s = p.untyped_storage()
        if is_huge(s):
            continue
        users.setdefault(s.data_ptr(), []).append(p)
        storages[s.data_ptr()] = s
    if not storages:
        return 0
    arenas: list[list[int]] = [[]]
    filled = 0
    for ptr, s in storages.items():
        if arenas[-1] and filled + s.nbytes() > ARENA_BYTES:
            arenas.append([])
            filled = 0
        arenas[-1].append(ptr)
        filled += _round_up(s.nbytes(), 64)  # every copy starts on a cache line
    moved = 0
    # Tensors made here must be ordinary ones even when called under torch.inference_mode (as decoding is): an
    # inference tensor as a parameter could not be trained afterwards.
    with torch.inference_mode(False), torch.no_grad():
        for arena in arenas:
            sizes = [_round_up(storages[ptr].nbytes(), 64) for ptr in arena]
            m, at = _map(sum(sizes))
            for ptr, size in zip(arena, sizes, strict=True):
                old = storages.pop(ptr)
                # A storage of its own over its slice of the mapping (frombuffer keeps the mapping alive).
                new = torch.frombuffer(m, dtype=torch.uint8, count=old.nbytes(), offset=at)
                new.copy_(torch.empty(0, dtype=torch.uint8).set_(old))
                for p in users.pop(ptr):
                    p.data = torch.empty(0, dtype=p.dtype).set_(new.untyped_storage(), p.storage_offset(), p.size(),
                                                                p.stride())  # fmt: skip
                at += size
                moved += old.nbytes()
                del old, new
    return moved
