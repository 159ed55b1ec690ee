"""Shared fixtures: tiny, seeded models that build in milliseconds on a 2-core CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from helpers import FIXTURES, SHARED_DATA
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


STAGES = ("acquire", "clean", "tokenizer", "tokenize", "model", "train", "generate", "eval", "serve")


def pytest_configure(config: pytest.Config) -> None:
    for stage in STAGES:
        config.addinivalue_line("markers", f"{stage}: a test of kiln.{stage} (tests/{stage}/)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its stage (the folder it lives in), so `pytest -m clean` selects one stage."""
    root = Path(__file__).resolve().parent
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(root)
        if len(rel.parts) > 1 and rel.parts[0] in STAGES:
            item.add_marker(rel.parts[0])
