"""Shared fixtures: tiny, seeded models that build in milliseconds on a 2-core CPU."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from helpers import FIXTURES, SHARED_DATA, conversations, run_cli, sentence_corpus
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


STAGES = (
    "acquire",
    "clean",
    "tokenizer",
    "tokenize",
    "model",
    "train",
    "generate",
    "serve",
    "interop",
    "posttrain",
    "plan",
    "eval",
)


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


SHAKESPEARE = Path(__file__).resolve().parents[1] / "src" / "kiln" / "assets" / "tinyshakespeare.txt"


# ------------------------------------------------------------------ a chat-capable base model (posttrain, serve)


@pytest.fixture(scope="session")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer model on a 400-id BPE with ChatML tokens, pretrained 40 steps on English sentences and Tiny
    Shakespeare."""
    root = tmp_path_factory.mktemp("base")
    text = sentence_corpus(2000, seed=11) + SHAKESPEARE.read_text(encoding="utf-8")
    (root / "corpus.txt").write_text(text, encoding="utf-8")
    steps = [
        ["tokenizer", "train", str(root / "corpus.txt"), "--vocab-size", "400", "--chat-tokens", "--out",
         str(root / "tok"), "--quiet"],
        ["tokenize", str(root / "corpus.txt"), "--tokenizer", str(root / "tok"), "--out", str(root / "shards"),
         "--quiet", "--workers", "1"],
        ["train", f"data={root / 'shards'}", "preset=tiny", "model.n_layer=2", "model.n_embd=64", "model.n_head=4",
         "model.block_size=192", "batch_size=8", "max_steps=40", "eval_batches=1", "sample_tokens=0",
         "warmup_steps=5", "device=cpu", "precision=fp32", f"out_dir={root / 'run'}"],
    ]  # fmt: skip
    for argv in steps:
        rc, out, err = run_cli(argv)
        assert rc == 0, out + err
    return root / "run"


@pytest.fixture(scope="session")
def chat_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 short chat conversations (messages JSONL): the user names three words, the assistant repeats them."""
    path = tmp_path_factory.mktemp("chat") / "chat.jsonl"
    lines = [json.dumps({"messages": [{"role": r, "content": t} for r, t in c]}) for c in conversations(300)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
