"""Hand-written kernels for decoding on x86 CPUs (`gemv.c`): fp32, one row with AVX2, and (AVX-512 CPUs) one to
eight rows, a small batch, reading each weight once for all of them; bfloat16, one to eight rows, where the CPU
has AVX512-BF16.

Why by hand: at one row a linear layer is a matrix-vector product whose speed is the rate its weight streams from
memory, and the libraries PyTorch calls leave much of that rate unused on the CPUs we see. Microbenchmark on a
2-core AMD EPYC (AVX2, no AVX-512), gpt2's 48 linear layers and LM head with cold weights (494 MB a token), best
of 7, three rounds: MKL's sgemv (`F.linear`) 47-57 ms (~10 GB/s), oneDNN with a pre-packed weight 35-43 ms
(~14 GB/s), this kernel on 2 threads 25-30 ms (~19 GB/s; a plain `torch.sum` read 14-25 GB/s the same minutes).
`cpu_fast.plan` still times it against the other two paths per layer shape, so where a library wins (a CPU with
AMX or AVX-512, say) the library is used.

On AVX-512 CPUs the source is built with `-mavx512f` as well, which adds `kiln_rows` for one to eight rows. On a
2-core Intel Xeon (AVX-512, AMX; 2026-12-06), gpt2's 49 linear layers in decoding order, best of 7: 8 rows 21-22 ms
against oneDNN packed 25-28 and MKL 50 (whole decode at batch 8: 247-257 tokens/s against 223 packed); one row
17.1-17.7 ms against MKL 18.2-18.8 and packed 22-23, so it takes one row there too.

On CPUs with AVX512-BF16 the build adds `kiln_rows_bf16`, the same one to eight rows for bfloat16 weights and
inputs (`dtype=bfloat16` decoding): half the bytes of fp32 a token, multiplied with VDPBF16PS straight from the
(out, in) layout. On a 2-core Zen 4 EPYC (AVX512-BF16, no AMX; 2026-12-06), gpt2's 49 linear layers in decoding
order, best of 7: one row 7.3-7.7 ms against oneDNN's packed bf16 9.9; eight rows 8.5-8.8 ms against 10.6.

The C source is compiled on first use with the system's C compiler into kiln's cache directory (`$KILN_CACHE`, else
`$XDG_CACHE_HOME/kiln` or `~/.cache/kiln`), named by a hash of the source and flags, and loaded with ctypes (the
call releases the GIL). Without a compiler, on another architecture or without AVX2 and FMA, `library()` is None
and decoding uses the library paths; `unavailable_reason()` says why.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SOURCE = Path(__file__).with_name("gemv.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC")
MAX_ROWS = 8
"""The most input rows `kiln_rows` takes (its accumulators fill AVX-512's registers)."""
_why_not: list[str] = []


def cache_dir() -> Path:
    """Where compiled helpers are kept between runs."""
    if os.environ.get("KILN_CACHE"):
        return Path(os.environ["KILN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kiln"


def flags() -> tuple[str, ...]:
    """The compiler flags for this CPU: AVX-512 adds the several-rows kernel, AVX512-BF16 its bfloat16 twin."""
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return FLAGS
    return FLAGS + (("-mavx512f", "-mavx512bw", "-mavx512bf16") if cpu_bf16() else ("-mavx512f",))


def cpu_bf16() -> bool:
    """Whether the CPU has AVX512-BF16 (asked of PyTorch's cpuinfo; an internal check, so guarded)."""
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check and check())


def builds() -> tuple[tuple[str, ...], ...]:
    """The builds to try, most capable first: a compiler that cannot target AVX512-BF16 still builds the AVX-512
    kernels, and one that cannot target AVX-512 the AVX2 kernel."""
    return tuple(dict.fromkeys((flags(), flags()[: len(FLAGS) + 1], FLAGS)))


def _compile(cc: str, out: Path, build: tuple[str, ...]) -> None:
    """Build the shared library next to its final name, then rename: a build killed midway, or two processes
    building at once, never leave a half-written library under the name that is loaded."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        subprocess.run([cc, *build, str(SOURCE), "-o", tmp], check=True, capture_output=True, text=True, timeout=120)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernel, or None where it cannot run here (the reason is kept for `unavailable_reason`)."""
    _why_not.clear()
    if platform.machine().lower() not in ("x86_64", "amd64"):
        _why_not.append(f"not an x86-64 CPU ({platform.machine()})")
        return None
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        _why_not.append(f"the CPU lacks AVX2/FMA (PyTorch's capability: {torch.backends.cpu.get_cpu_capability()})")
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        _why_not.append("no C compiler (cc or gcc) on PATH")
        return None
    lib, source = None, SOURCE.read_bytes()
    for build in builds():
        key = hashlib.sha256(source + " ".join(build).encode()).hexdigest()[:16]
        out = cache_dir() / f"gemv-{key}.so"
        try:
            if not out.exists():
                _compile(cc, out, build)
            lib = ctypes.CDLL(str(out))
            break
        except (OSError, subprocess.SubprocessError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            _why_not.append(f"building {out.name} with {cc} failed: {detail.strip()[:300]}")
    if lib is None:
        return None
    _why_not.clear()
    fn = lib.kiln_gemv
    fn.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_ssize_t, ctypes.c_ssize_t, ctypes.c_int]
    fn.restype = None
    if hasattr(lib, "kiln_rows"):  # built with AVX-512
        lib.kiln_rows.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_ssize_t] * 3 + [ctypes.c_int]
        lib.kiln_rows.restype = None
    if hasattr(lib, "kiln_rows_bf16"):  # built with AVX512-BF16
        lib.kiln_rows_bf16.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_ssize_t] * 3 + [ctypes.c_int]
        lib.kiln_rows_bf16.restype = None
    return lib


def several_rows() -> bool:
    """Whether the several-rows kernel was built here (an AVX-512 CPU)."""
    lib = library()
    return lib is not None and hasattr(lib, "kiln_rows")


def bf16_rows() -> bool:
    """Whether the bfloat16 kernel (one to eight rows) was built here (a CPU with AVX512-BF16)."""
    lib = library()
    return lib is not None and hasattr(lib, "kiln_rows_bf16")


def unavailable_reason() -> str | None:
    """Why `library()` is None, or None when the kernel is available."""
    return None if library() is not None else "; ".join(_why_not) or "unavailable"


def rows(x: Tensor) -> int:
    """How many input rows `x` holds (its leading dimensions flattened): what decides which kernel, if any, runs."""
    return x.numel() // max(1, x.shape[-1])


Kernel = Callable[[int, int, int | None, int, int, int, int, int], None]
"""A kernel as `linear` calls it: (W, X, bias or None, Y) addresses, then rows, out features, in features, threads."""


@functools.cache
def _kernels(lib: ctypes.CDLL) -> dict[tuple[torch.dtype, int], Kernel]:
    """The kernel for each (dtype, input rows) this build takes, looked up once per call of `linear` (keyed on the
    library, so a rebuilt one gets its own table)."""
    table: dict[tuple[torch.dtype, int], Kernel] = {}
    if hasattr(lib, "kiln_rows"):  # AVX-512: one row goes through kiln_rows too (it read faster there)
        table.update({(torch.float32, m): lib.kiln_rows for m in range(1, MAX_ROWS + 1)})
    else:
        one = lib.kiln_gemv
        table[torch.float32, 1] = lambda w, x, b, y, m, out, n, threads: one(w, x, b, y, out, n, threads)
    if hasattr(lib, "kiln_rows_bf16"):
        table.update({(torch.bfloat16, m): lib.kiln_rows_bf16 for m in range(1, MAX_ROWS + 1)})
    return table


def _kernel(w: Tensor, b: Tensor | None, x: Tensor) -> Kernel | None:
    """The kernel for `F.linear(x, w, b)`, or None where none applies: on the CPU, input, weight and bias of one
    dtype, and either fp32 with one row (or up to `MAX_ROWS` where `several_rows`) or bf16 with one to `MAX_ROWS`
    rows where `bf16_rows`. Written for a decode step's every linear layer: with `applies` and the checks `linear`
    made before, a call on a tiny layer took 14.6 us on a 2-core Xeon, against 8.9 now and ~3 for the ctypes call
    alone (gpt2 decoding: 49 calls a step, ~0.28 ms saved)."""
    lib = library()
    n = w.shape[1]
    if lib is None or not n or x.shape[-1] != n or x.dtype != w.dtype:
        return None
    fn = _kernels(lib).get((w.dtype, x.numel() // n))
    if fn is None or not (x.is_cpu and w.is_cpu) or (b is not None and b.dtype != w.dtype):
        return None
    return fn


def applies(module: nn.Linear, x: Tensor) -> bool:
    """Whether `linear(module, x)` runs one of the kernels (see `_kernel` for the cases they are written for)."""
    return _kernel(module.weight, module.bias, x) is not None


def linear(module: nn.Linear, x: Tensor) -> Tensor:
    """`module(x)` through the kernels (`F.linear` where they do not apply). The result does not track gradients:
    the kernels are for inference."""
    w, b = module.weight, module.bias
    fn = _kernel(w, b, x)
    if fn is None:
        return F.linear(x, w, b)
    w = w if w.is_contiguous() else w.contiguous()
    x = x if x.is_contiguous() else x.contiguous()
    b = b if b is None or b.is_contiguous() else b.contiguous()  # held: the kernel reads it
    out, n = w.shape
    y = torch.empty((*x.shape[:-1], out), dtype=w.dtype)
    fn(w.data_ptr(), x.data_ptr(), None if b is None else b.data_ptr(), y.data_ptr(), x.numel() // n, out, n,
       torch.get_num_threads())  # fmt: skip
    return y
