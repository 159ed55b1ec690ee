"""Shared fixtures: tiny, seeded models that build in milliseconds on a 2-core CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kiln.model import GPT, GPTConfig


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spinning
    workers make each forward ~100x slower; one thread keeps the suite fast and timings stable."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = dict(vocab_size=64, block_size=32, n_layer=2, n_head=4, n_embd=32)


def _make_model(*, dtype: torch.dtype = torch.float64, seed: int = 0, train: bool = False, **overrides) -> GPT:
    """A tiny GPT (TINY shape, any field overridable), seeded, in `dtype`, in eval mode unless `train`."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**TINY, **overrides})).to(dtype)
    return model.train(train)


@pytest.fixture
def make_model() -> Callable[..., GPT]:
    return _make_model


@pytest.fixture
def rand_ids() -> Callable[..., torch.Tensor]:
    def make(*shape: int, vocab: int = TINY["vocab_size"], seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, vocab, shape, generator=g)

    return make


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real corpora and vocabularies). CI always has it; a fresh clone may not, and then the
    tests that need it (marked `shared`) skip with this reason rather than fail."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder {SHARED_DATA} (present in CI; see README)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny checkpoints trained for real by `kiln train` (see tests/serve_support.py)."""
    from serve_support import build_models

    return build_models(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="session")
def server(serve_models: Path):
    """`kiln serve` on those models, on a free 127.0.0.1 port, shared by the tests of a session."""
    from serve_support import run_server

    with run_server(serve_models) as running:
        yield running
