"""Tests for kiln.train.muon: the Newton-Schulz orthogonalisation and the Muon optimizer (against torch.optim.Muon)."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn

from kiln.model import GPT, GPTConfig
from kiln.train.config import TrainConfig
from kiln.train.muon import _NS_COEFFS, Muon, orthogonalize
from kiln.train.optim import build_optimizers

CPU = torch.device("cpu")
SHAPE = dict(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=32)
TorchMuon = getattr(torch.optim, "Muon", None)
needs_torch_muon = pytest.mark.skipif(TorchMuon is None, reason="torch.optim.Muon needs torch >= 2.9")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ns_scalar(s: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """What the quintic Newton-Schulz iteration does to one singular value s of X / ||X||_F (each step maps
    X = U S V^T to U p(S) V^T with p(x) = a x + b x^3 + c x^5, so singular values evolve independently)."""
    a, b, c = _NS_COEFFS
    s = s.double()
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s


def _with_spectrum(rows: int, cols: int, svals: torch.Tensor, seed: int) -> torch.Tensor:
    """A rows x cols fp32 matrix with the given singular values and random singular vectors."""
    g = _gen(seed)
    k = min(rows, cols)
    u, _ = torch.linalg.qr(torch.randn(rows, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, k, generator=g, dtype=torch.float64))
    return ((u * svals.double()) @ v.T).float()


# Random Gaussian tall/wide matrices (aspect 4:1) are well conditioned (sigma_min / sigma_max ~ 1/3); a random
# square Gaussian one is not (its smallest singular values tend to 0), so the square cases get a set spectrum.
BAND_INPUTS = {
    "tall": lambda: torch.randn(96, 24, generator=_gen(1)),
    "wide": lambda: torch.randn(24, 96, generator=_gen(2)),
    "square-cond20": lambda: _with_spectrum(48, 48, torch.linspace(1.0, 0.05, 48), seed=3),
    "square-cond100": lambda: _with_spectrum(64, 64, torch.logspace(0, -2, 64), seed=4),
}


# ------------------------------------------------------------------------------------------------ orthogonalize


def test_quintic_map_band() -> None:
    """The band asserted below, derived: five steps of p map every normalised singular value in [3e-3, 1] into
    [0.68, 1.21] (p deliberately overshoots 1 to grow small values fast; it does not converge to exactly 1)."""
    out = _ns_scalar(torch.linspace(3e-3, 1.0, 20001))
    assert 0.68 < out.min() < 0.69
    assert 1.20 < out.max() < 1.21


@pytest.mark.parametrize("kind", list(BAND_INPUTS))
def test_orthogonalize_singular_values_in_band_and_close_to_uv(kind: str) -> None:
    g = BAND_INPUTS[kind]()
    out = orthogonalize(g)
    sv = torch.linalg.svdvals(out.double())
    # every normalised input singular value here is >= 3e-3, so [0.68, 1.21] plus slack for fp32 rounding
    assert (torch.linalg.svdvals(g.double()) / g.double().norm()).min() >= 3e-3
    assert sv.min() >= 0.65, sv.min()
    assert sv.max() <= 1.25, sv.max()
    u, _, vh = torch.linalg.svd(g.double(), full_matrices=False)
    cos = torch.nn.functional.cosine_similarity(out.double().flatten(), (u @ vh).flatten(), dim=0)
    assert cos > 0.95, cos


@pytest.mark.parametrize(("rows", "cols"), [(64, 16), (16, 64), (32, 32), (96, 96), (40, 56)])
def test_orthogonalize_applies_the_quintic_to_each_singular_value(rows: int, cols: int) -> None:
    """Exactly (to fp32 rounding) p^5 of each normalised singular value, including random square matrices whose
    smallest singular values are too small to reach the band; and still well aligned with U V^T."""
    g = torch.randn(rows, cols, generator=_gen(rows * 1000 + cols))
    out = orthogonalize(g)
    s_in = torch.linalg.svdvals(g.double()) / g.double().norm()
    expected = _ns_scalar(s_in).sort().values
    got = torch.linalg.svdvals(out.double()).sort().values
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-3)
    u, _, vh = torch.linalg.svd(g.double(), full_matrices=False)
    cos = torch.nn.functional.cosine_similarity(out.double().flatten(), (u @ vh).flatten(), dim=0)
    assert cos > 0.95, cos


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(24, 8), (8, 24), (16, 16)])
def test_orthogonalize_keeps_shape_and_dtype(dtype: torch.dtype, shape: tuple[int, int]) -> None:
    g = torch.randn(*shape, generator=_gen(0)).to(dtype)
    out = orthogonalize(g)
    assert out.shape == g.shape
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    # on CPU the iteration runs in fp32 whatever the input dtype
    assert torch.equal(out, orthogonalize(g.float()).to(dtype))


def test_orthogonalize_batched_matches_per_matrix() -> None:
    g = torch.randn(3, 8, 20, generator=_gen(5))
    out = orthogonalize(g)
    for i in range(3):
        torch.testing.assert_close(out[i], orthogonalize(g[i]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("rank", [1, 3])
def test_orthogonalize_rank_deficient_is_finite(rank: int) -> None:
    gen = _gen(rank)
    g = torch.randn(32, rank, generator=gen) @ torch.randn(rank, 16, generator=gen)
    out = orthogonalize(g)
    assert torch.isfinite(out).all()
    sv = torch.linalg.svdvals(out.double())
    assert ((sv[:rank] > 0.65) & (sv[:rank] < 1.25)).all(), sv[:rank]
    assert sv[rank:].max() < 1e-3  # the null space is not amplified into spurious directions


def test_orthogonalize_zero_matrix_is_zero() -> None:
    out = orthogonalize(torch.zeros(8, 4))
    assert torch.equal(out, torch.zeros(8, 4))


# ------------------------------------------------------------------------------------------------ Muon


def _fp32_torch_newton_schulz(grad, ns_coefficients, ns_steps, eps):
    """torch.optim._muon._zeropower_via_newtonschulz transcribed with fp32 in place of its bf16."""
    a, b, c = ns_coefficients
    x = grad.float()
    tall = grad.size(0) > grad.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


def _muon_pair(shape, *, weight_decay: float, nesterov: bool = True, steps: int = 4, seed: int = 0):
    """kiln's Muon and torch's (adjust_lr_fn="original": lr x sqrt(max(1, rows/cols)), Keller Jordan's scaling,
    which kiln uses) from the same weights, fed the same fixed gradients; yields the per-step parameter deltas."""
    gen = _gen(seed)
    w0 = torch.randn(*shape, generator=gen)
    grads = [torch.randn(*shape, generator=gen) for _ in range(steps)]
    pk, pt = nn.Parameter(w0.clone()), nn.Parameter(w0.clone())
    kw = dict(lr=0.02, momentum=0.95, nesterov=nesterov, weight_decay=weight_decay)
    ok = Muon([pk], **kw)
    ot = TorchMuon([pt], adjust_lr_fn="original", **kw)
    for grad in grads:
        before_k, before_t = pk.detach().clone(), pt.detach().clone()
        pk.grad, pt.grad = grad.clone(), grad.clone()
        ok.step()
        ot.step()
        yield pk.detach() - before_k, pt.detach() - before_t
    # the momentum buffers see only gradients, so they stay bit-identical whatever the NS precision
    assert torch.equal(ok.state[pk]["momentum_buffer"], ot.state[pt]["momentum_buffer"])


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@needs_torch_muon
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (32, 32)])
def test_muon_matches_torch_muon_with_fp32_newton_schulz(monkeypatch, shape, weight_decay, nesterov) -> None:
    """Same algorithm: with torch's Newton-Schulz switched to fp32, every step agrees to fp32 rounding."""
    torch_muon_module = sys.modules.get(TorchMuon.step.__module__)  # torch/optim/_muon.py (Muon is re-exported)
    if not hasattr(torch_muon_module, "_zeropower_via_newtonschulz"):
        pytest.skip("torch.optim.Muon's Newton-Schulz helper moved")
    monkeypatch.setattr(torch_muon_module, "_zeropower_via_newtonschulz", _fp32_torch_newton_schulz)
    for dk, dt in _muon_pair(shape, weight_decay=weight_decay, nesterov=nesterov):
        assert _rel(dk, dt) < 1e-4


@needs_torch_muon
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (32, 32), (128, 48)])
def test_muon_matches_torch_muon(shape, weight_decay) -> None:
    """Against torch's own bf16 Newton-Schulz (kiln runs it in fp32 on CPU). bf16 keeps 8 significand bits
    (unit roundoff 2^-9 ~ 2e-3); each of the 5 iterations rounds X, X X^T, its square, their combination and
    the product, and the polynomial amplifies small singular values ~3.4x per step, so the update differs by
    ~1-2% (measured 1.3e-2 .. 2.1e-2 over these shapes and steps). 4e-2 leaves 2x headroom and still catches
    real mismatches, measured on these inputs: momentum 0.9 for 0.95 (8-15% from the second step), plain for
    Nesterov momentum (~60%), a missing sqrt(rows/cols) scale (~100%)."""
    deltas = list(_muon_pair(shape, weight_decay=weight_decay))
    errors = [_rel(dk, dt) for dk, dt in deltas]
    assert max(errors) < 4e-2, errors


def test_muon_update_is_scaled_orthogonalised_gradient() -> None:
    """Without momentum one step is p <- p (1 - lr wd) - lr sqrt(max(1, rows/cols)) NS(grad)."""
    for shape, scale in [((64, 16), 2.0), ((16, 64), 1.0), ((32, 32), 1.0)]:
        gen = _gen(7)
        w0, grad = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
        p = nn.Parameter(w0.clone())
        opt = Muon([p], lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.2)
        p.grad = grad
        opt.step()
        expected = w0 * (1 - 0.05 * 0.2) - 0.05 * scale * orthogonalize(grad)
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-6)


def test_muon_skips_params_without_grad_and_returns_closure_loss() -> None:
    a, b = nn.Parameter(torch.randn(4, 4)), nn.Parameter(torch.randn(4, 4))
    b_before = b.detach().clone()
    opt = Muon([a, b])

    def closure():
        return (a**2).sum()

    a.grad = torch.ones(4, 4)
    expected = (a.detach() ** 2).sum()
    loss = opt.step(closure)
    assert torch.equal(loss, expected)
    assert torch.equal(b.detach(), b_before)
    assert b not in opt.state
    assert "momentum_buffer" in opt.state[a]


@pytest.mark.parametrize("shape", [(8,), (2, 3, 4), ()])
def test_muon_rejects_non_matrices(shape) -> None:
    with pytest.raises(ValueError, match=r"2-D weight matrices only") as exc:
        Muon([nn.Parameter(torch.zeros(shape)), nn.Parameter(torch.zeros(3, 3))])
    assert str(tuple(shape)) in str(exc.value)


@pytest.mark.parametrize(("lr", "momentum"), [(0.0, 0.9), (-0.01, 0.9), (0.02, 1.0), (0.02, -0.1), (0.02, 1.5)])
def test_muon_rejects_bad_hyperparameters(lr: float, momentum: float) -> None:
    with pytest.raises(ValueError, match=r"lr > 0 and momentum in \[0, 1\)") as exc:
        Muon([nn.Parameter(torch.zeros(3, 3))], lr=lr, momentum=momentum)
    assert f"lr={lr}" in str(exc.value)
    assert f"momentum={momentum}" in str(exc.value)


def test_muon_solves_least_squares() -> None:
    gen = _gen(0)
    w_star = 0.1 * torch.randn(16, 32, generator=gen)
    x = torch.randn(128, 32, generator=gen)
    y = x @ w_star.T
    w = nn.Parameter(torch.zeros(16, 32))
    opt = Muon([w], lr=0.02)

    def loss_fn() -> torch.Tensor:
        return ((x @ w.T - y) ** 2).mean()

    first = loss_fn().item()
    for _ in range(20):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    assert loss_fn().item() < 0.35 * first  # measured ~0.22x


def test_muon_trains_a_tiny_gpt() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SHAPE))
    opts = build_optimizers(model, TrainConfig(optimizer="muon", lr=3e-3, model=model.config), CPU)
    assert isinstance(opts[0], Muon)
    ids = torch.randint(0, SHAPE["vocab_size"], (4, SHAPE["block_size"] + 1), generator=_gen(1))
    losses = []
    for _ in range(20):
        _, loss = model(ids[:, :-1], ids[:, 1:])
        losses.append(loss.item())
        loss.backward()
        for opt in opts:
            opt.step()
            opt.zero_grad()
    assert losses[0] == pytest.approx(math.log(SHAPE["vocab_size"]), abs=0.1)
    assert losses[-1] < losses[0] - 1.0  # measured 4.17 -> 2.53
