"""kiln.model.gemv: the hand-written fp32 kernels (one row; up to eight on AVX-512 CPUs) against float64 `F.linear`,
the bf16 kernel (AVX512-BF16 CPUs) against exact sums rounded as PyTorch rounds, decoding through them equal to
the plain path (fp32) or near-optimal under fp32 logits (bf16), the per-shape plan offering them for the rows and
dtypes they take, and a missing compiler leaving decoding intact."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F

from kiln.generate import SamplingParams, generate_batch
from kiln.model import cpu_fast, gemv

needs_kernel = pytest.mark.skipif(gemv.library() is None, reason=f"kernel unavailable: {gemv.unavailable_reason()}")
needs_rows = pytest.mark.skipif(not gemv.several_rows(), reason="the several-rows kernel is built for AVX-512 CPUs")
needs_bf16 = pytest.mark.skipif(not gemv.bf16_rows(), reason="the bf16 kernel is built for CPUs with AVX512-BF16")


def random_layer(out: int, inp: int, bias: bool, rows: int, seed: int) -> tuple[torch.nn.Linear, torch.Tensor]:
    """A layer with N(0, 1) weights and an input of `rows` rows shaped (rows, 1, inp), as a decode step has it."""
    g = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(inp, out, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out, inp, generator=g))
        if bias:
            layer.bias.copy_(torch.randn(out, generator=g))
    return layer, torch.randn(rows, 1, inp, generator=g)


def on_threads(threads: int, layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return gemv.linear(layer, x)
    finally:
        torch.set_num_threads(before)


def float64_linear(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x.double(), layer.weight.double(), None if layer.bias is None else layer.bias.double())


@needs_kernel
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("out", "inp", "bias"), [(2304, 768, True), (50257, 64, False), (7, 13, True),
                                                  (3, 5, False), (130, 1000, True), (66, 24, True)])  # fmt: skip
def test_the_kernel_equals_float64_linear(out, inp, bias, threads):
    """Every row-count tail (out not a multiple of 4, in not of 8 or 16) and one or several threads."""
    layer, x = random_layer(out, inp, bias, rows=1, seed=out + inp)
    y, want = on_threads(threads, layer, x), float64_linear(layer, x)
    assert y.shape == want.shape and y.dtype == torch.float32
    # fp32 sums of `inp` products of N(0, 1) numbers: rounding grows like sqrt(inp) x eps x |terms|.
    assert (y.double() - want).abs().max() < 1e-5 * inp
    assert not torch.equal(y, torch.zeros_like(y))
    if gemv.several_rows():  # AVX-512: linear() took kiln_rows; the AVX2 one-row kernel is in the build too
        w, b = layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
        y2 = torch.empty_like(y)
        gemv.library().kiln_gemv(w.data_ptr(), x.data_ptr(), None if b is None else b.data_ptr(), y2.data_ptr(),
                                 out, inp, threads)  # fmt: skip
        assert (y2.double() - want).abs().max() < 1e-5 * inp


@needs_rows
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", [2, 3, 4, 7, 8])
@pytest.mark.parametrize(("out", "inp", "bias"), [(2304, 768, True), (3, 5, False), (131, 1000, True),
                                                  (65, 24, True), (1000, 3072, False)])  # fmt: skip
def test_the_several_rows_kernel_equals_float64_linear(out, inp, bias, rows, threads):
    """Odd weight-row counts (the last row alone), inputs not a multiple of 16 (the masked tail), every row count."""
    layer, x = random_layer(out, inp, bias, rows=rows, seed=out * rows + inp)
    assert gemv.applies(layer, x)
    y, want = on_threads(threads, layer, x), float64_linear(layer, x)
    assert y.shape == want.shape and y.dtype == torch.float32
    assert (y.double() - want).abs().max() < 1e-5 * inp
    for r in range(rows):  # each row its own: no row's sums leak into another's
        assert (gemv.linear(layer, x[r]).double() - want[r]).abs().max() < 1e-5 * inp


@needs_kernel
def test_a_transposed_weight_and_other_inputs_fall_back_or_are_made_contiguous():
    layer = torch.nn.Linear(16, 8)
    with torch.no_grad():
        layer.weight = torch.nn.Parameter(torch.randn(16, 8).t())  # a view: not contiguous
    x = torch.randn(1, 16)
    torch.testing.assert_close(gemv.linear(layer, x), layer(x))
    many = torch.randn(gemv.MAX_ROWS + 1, 16)  # more rows than the kernels take: F.linear answers
    assert not gemv.applies(layer, many)
    torch.testing.assert_close(gemv.linear(layer, many), layer(many))
    few = torch.randn(3, 16)  # a few rows: the several-rows kernel where it was built, else F.linear
    assert gemv.applies(layer, few) == gemv.several_rows()
    torch.testing.assert_close(gemv.linear(layer, few), layer(few))
    assert not gemv.applies(layer.double(), x.double())


@needs_kernel
def test_decoding_through_the_kernel_gives_the_plain_paths_tokens(make_model, rand_ids, monkeypatch):
    model = make_model(dtype=torch.float32, init_std=0.5, pos_encoding="rope", n_kv_head=2)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=12, logprobs=2)
    linears = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
    one = [rand_ids(7, seed=3).tolist()]
    batch = [rand_ids(n, seed=n).tolist() for n in (12, 9, 14)]  # prefills of 35 rows, decode steps of 3
    monkeypatch.setattr(cpu_fast, "forced", "plain")
    want = generate_batch(model, one, greedy) + generate_batch(model, batch, greedy)
    cpu_fast.release(model)
    calls = []
    monkeypatch.setattr(cpu_fast, "forced", "gemv")
    real = gemv.linear
    monkeypatch.setattr(gemv, "linear", lambda m, x: calls.append(x.numel() // x.shape[-1]) or real(m, x))
    got = generate_batch(model, one, greedy)
    # gemv forced: the regimes of rows the kernels do not take (the batch's prefill) run packed
    assert cpu_fast.plan(model) == {1: "gemv", 8: "gemv" if gemv.several_rows() else "packed", 64: "packed"}
    assert calls.count(1) >= 11 * linears
    got += generate_batch(model, batch, greedy)
    assert (calls.count(3) >= 11 * linears) == gemv.several_rows()
    for g, w in zip(got, want, strict=True):
        assert g.tokens == w.tokens
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)


@needs_kernel
def test_the_plan_times_the_kernels_for_the_fp32_rows_they_take(make_model):
    assert cpu_fast.candidates(1, torch.float32) == ("packed", "plain", "gemv")
    assert cpu_fast.candidates(8, torch.float32) == (cpu_fast.PATHS if gemv.several_rows() else ("packed", "plain"))
    assert cpu_fast.candidates(64, torch.float32) == ("packed", "plain")
    bf16 = cpu_fast.PATHS if gemv.bf16_rows() else ("packed", "plain")
    assert cpu_fast.candidates(1, torch.bfloat16) == cpu_fast.candidates(8, torch.bfloat16) == bf16
    assert cpu_fast.candidates(64, torch.bfloat16) == ("packed", "plain")
    model = make_model(dtype=torch.float32)
    with torch.inference_mode(), cpu_fast.packed_linears(model):
        model(torch.zeros(1, 1, dtype=torch.long))
    chosen = cpu_fast.plan(model)
    assert "gemv" not in chosen[64]
    for m in (m for m in model.modules() if isinstance(m, torch.nn.Linear)):
        assert m.__dict__["_kiln_path"][1] in cpu_fast.PATHS
        assert (1 in m.__dict__.get("_kiln_packed", {})) == (m.__dict__["_kiln_path"][1] == "packed")


def test_without_a_compiler_the_kernel_is_off_and_decoding_goes_on(make_model, rand_ids, tmp_path, monkeypatch):
    """No C compiler (or a failing one): `library()` is None with the reason, the plan times the library paths
    only, and generation works as before."""
    monkeypatch.setenv("KILN_CACHE", str(tmp_path / "cache"))  # nothing built there yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    gemv.library.cache_clear()
    try:
        assert gemv.library() is None and gemv.unavailable_reason()
        assert cpu_fast.candidates(1, torch.float32) == ("packed", "plain")
        model = make_model(dtype=torch.float32)
        out = generate_batch(model, [rand_ids(5).tolist()], SamplingParams(temperature=0.0, max_new_tokens=4))
        assert len(out[0].tokens) == 4
        assert not list((tmp_path / "cache").glob("*.so*")), "a failed build leaves no library or temporary file"
    finally:
        gemv.library.cache_clear()


@contextmanager
def compiler_refusing(flag: str, tmp_path, monkeypatch) -> Iterator[None]:
    """gcc behind a wrapper that fails every build asking for `flag` (an older compiler), with an empty kernel
    cache, so `gemv.library()` builds afresh within the block."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc to wrap")
    cc = tmp_path / f"cc-without{flag}"
    cc.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = {flag} ] && exit 1; done\nexec gcc "$@"\n')
    cc.chmod(0o755)
    monkeypatch.setenv("KILN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(cc))
    gemv.library.cache_clear()
    try:
        yield
    finally:
        gemv.library.cache_clear()


@needs_kernel
def test_a_compiler_without_avx512_still_builds_the_one_row_kernel(tmp_path, monkeypatch):
    """Where the AVX-512 build fails (an old compiler), the AVX2 build is tried next: the one-row kernel works and
    the several-rows one is simply absent."""
    with compiler_refusing("-mavx512f", tmp_path, monkeypatch):
        assert gemv.library() is not None, gemv.unavailable_reason()
        assert not gemv.several_rows()
        layer, x = random_layer(40, 24, True, rows=1, seed=0)
        assert (gemv.linear(layer, x).double() - float64_linear(layer, x)).abs().max() < 1e-5 * 24


def small_integer_layer(out: int, inp: int, bias: bool, rows: int, seed: int) -> tuple[torch.nn.Linear, torch.Tensor]:
    """A bf16 layer whose weights, bias and inputs are integers in [-8, 8]: every product and partial sum is an
    integer below 2^24, so fp32 adds them exactly in any order and the one rounding left is fp32 -> bf16."""
    g = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(inp, out, bias=bias, dtype=torch.bfloat16)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-8, 9, (out, inp), generator=g))
        if bias:
            layer.bias.copy_(torch.randint(-8, 9, (out,), generator=g))
    return layer, torch.randint(-8, 9, (rows, 1, inp), generator=g).to(torch.bfloat16)


@needs_bf16
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", [1, 2, 7, 8])
@pytest.mark.parametrize(("out", "inp", "bias"), [(2304, 768, True), (3, 5, False), (131, 1000, True),
                                                  (65, 24, True), (1000, 3072, False), (64, 33, False)])  # fmt: skip
def test_the_bf16_kernel_rounds_exact_sums_as_pytorch_does(out, inp, bias, rows, threads):
    """Sums exact in fp32 (integers), so the kernel must return exactly PyTorch's round-to-nearest-even of them:
    checks every product is counted once (masked tails of 1-31 values, odd weight-row counts, 1-8 rows, one or two
    threads) and the final rounding (integer sums past 256 need it)."""
    layer, x = small_integer_layer(out, inp, bias, rows=rows, seed=out * rows + inp)
    assert gemv.applies(layer, x)
    y = on_threads(threads, layer, x)
    exact = float64_linear(layer, x)
    assert y.shape == exact.shape and y.dtype == torch.bfloat16
    assert inp < 24 or exact.abs().max() > 256, "the longer sums should need rounding to bf16"
    assert torch.equal(y, exact.float().to(torch.bfloat16))
    for r in range(rows):  # each row its own: no row's sums leak into another's
        assert torch.equal(gemv.linear(layer, x[r]), y[r])


@needs_bf16
@pytest.mark.parametrize(("out", "inp"), [(2304, 768), (50257, 64), (7, 45)])
def test_the_bf16_kernel_on_random_weights_is_within_bf16_rounding_of_float64(out, inp):
    g = torch.Generator().manual_seed(out)
    layer = torch.nn.Linear(inp, out, dtype=torch.bfloat16)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out, inp, generator=g))
        layer.bias.copy_(torch.randn(out, generator=g))
    x = torch.randn(8, 1, inp, generator=g).to(torch.bfloat16)
    y, want = gemv.linear(layer, x).double(), float64_linear(layer, x)
    # one bf16 rounding (half a unit in the 8th bit: 2^-8 of the value) after fp32 sums of N(0, 1) products
    assert ((y - want).abs() <= want.abs() * 2**-8 + 1e-5 * inp).all()
    assert not torch.equal(y, torch.zeros_like(y))


@needs_bf16
def test_bf16_inputs_the_kernel_does_not_take_fall_back(monkeypatch):
    layer = torch.nn.Linear(16, 8, dtype=torch.bfloat16)
    assert not gemv.applies(layer, torch.randn(gemv.MAX_ROWS + 1, 16, dtype=torch.bfloat16))
    assert not gemv.applies(layer, torch.randn(1, 16))  # fp32 input into a bf16 weight
    mixed = torch.nn.Linear(16, 8, dtype=torch.bfloat16)
    mixed.bias = torch.nn.Parameter(torch.zeros(8))  # an fp32 bias
    assert not gemv.applies(mixed, torch.randn(1, 16, dtype=torch.bfloat16))
    many = torch.randn(gemv.MAX_ROWS + 1, 16, dtype=torch.bfloat16)
    torch.testing.assert_close(gemv.linear(layer, many), layer(many))


@needs_bf16
def test_bf16_decoding_through_the_kernel_picks_tokens_fp32_rates_near_best(make_model, rand_ids, monkeypatch):
    """bf16 greedy decoding (one sequence, then three at once) with the kernel forced: every token it picks is
    within bf16's error of the best token under the fp32 model's logits on the same sequence."""
    model = make_model(dtype=torch.float32, init_std=0.5, pos_encoding="rope", n_kv_head=2)
    bf16_model = copy.deepcopy(model).to(torch.bfloat16)
    linears = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
    monkeypatch.setattr(cpu_fast, "forced", "gemv")
    calls = []
    real = gemv.linear
    monkeypatch.setattr(gemv, "linear", lambda m, x: calls.append((gemv.rows(x), x.dtype)) or real(m, x))
    prompts = [rand_ids(7, seed=3).tolist()] + [rand_ids(n, seed=n).tolist() for n in (12, 9, 14)]
    n = 12
    got = generate_batch(bf16_model, prompts[:1], SamplingParams(temperature=0.0, max_new_tokens=n))
    got += generate_batch(bf16_model, prompts[1:], SamplingParams(temperature=0.0, max_new_tokens=n))
    assert cpu_fast.plan(bf16_model) == {1: "gemv", 8: "gemv", 64: "packed"}
    assert calls.count((1, torch.bfloat16)) >= (n - 1) * linears
    assert calls.count((3, torch.bfloat16)) >= (n - 1) * linears
    near = []
    for prompt, out in zip(prompts, got, strict=True):
        with torch.inference_mode():
            logits = model(torch.tensor([prompt + out.tokens]), all_logits=True)[0][0, len(prompt) - 1 : -1]
        slack = 0.02 * float(logits.abs().max())  # bf16's logits stray from fp32's by less (test_bf16.py)
        best = logits.max(dim=-1).values
        picked = logits.gather(1, torch.tensor(out.tokens)[:, None])[:, 0]
        assert (picked >= best - slack).all(), f"a token fp32 rates more than {slack:.3f} below the best"
        near.append(float((logits >= best[:, None] - slack).float().sum(dim=-1).mean()))
    assert max(near) < 0.1 * logits.shape[-1], "the check should rule out most of the vocabulary"


@needs_bf16
def test_a_compiler_without_avx512_bf16_still_builds_the_fp32_kernels(tmp_path, monkeypatch):
    """Where the AVX512-BF16 build fails (an older compiler), the AVX-512 build is tried next."""
    with compiler_refusing("-mavx512bf16", tmp_path, monkeypatch):
        assert gemv.library() is not None and gemv.several_rows() and not gemv.bf16_rows()
        assert cpu_fast.candidates(1, torch.bfloat16) == ("packed", "plain")
