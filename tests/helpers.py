"""Helpers shared by the tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import io
import random
import shutil
from pathlib import Path

import torch

# ../shared/data beside the repository (CI has it; a bare clone may not) and the small files the repo ships.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

POS_ENCODINGS = ["learned", "sinusoidal", "rope", "alibi", "none"]


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-9) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=0)


def all_logits(model, idx, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(idx, all_logits=True, **kw)[0]


def sentence_corpus(n_sentences: int, seed: int = 0) -> str:
    """Varied, repetitive sentences with some multi-byte characters (so bytes/token > 1): a corpus a tiny
    model learns something from in a few steps."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "my friend", "the king", "our café", "Zoë"]
    verbs = ["sees", "likes", "eats", "finds", "wants", "naïvely greets"]
    objects = ["the fish", "a red ball", "the moon", "some bread", "the crown", "a piñata"]
    lines = [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}." for _ in range(n_sentences)]
    return "\n".join(lines) + "\n"


# The smallest `kiln train` that runs: a 1-layer, 32-wide model on CPU, one eval batch, no sample.
TINY_TRAIN = [
    "preset=tiny",
    "model.n_layer=1",
    "model.n_embd=32",
    "model.n_head=2",
    "model.block_size=32",
    "batch_size=4",
    "eval_batches=1",
    "sample_tokens=0",
    "device=cpu",
]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """kiln.cli.main(argv) in this process with stdout and stderr captured (usable in any fixture scope)."""
    from kiln.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


CHAT_WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "garden",
    "window",
    "silver",
    "forest",
    "candle",
    "harbor",
    "meadow",
    "lantern",
]


def cut_and_resume(stage: str, argv: list[str], run: Path, last_step: int) -> None:
    """`kiln STAGE ARGV out_dir=RUN`, its last checkpoint (step `last_step`) removed as if the run were killed right
    after the one before (later checkpoints and metrics never happened), then resumed: the resume tests compare
    RUN's metrics with an uninterrupted run's."""
    rc, _, err = run_cli([stage, *argv, f"out_dir={run}"])
    assert rc == 0, err
    shutil.rmtree(run / "checkpoints" / f"step_{last_step:07d}")
    rc, _, err = run_cli([stage, f"resume={run}"])
    assert rc == 0, err


def conversations(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """n conversations: an optional system turn, then one or two user/assistant exchanges."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        turns: list[tuple[str, str]] = []
        if i % 3 == 0:
            turns.append(("system", "You repeat words."))
        for _ in range(1 + (i % 2)):
            words = rng.sample(CHAT_WORDS, 3)
            turns.append(("user", f"Say {', '.join(words)}."))
            turns.append(("assistant", " ".join(words)))
        out.append(turns)
    return out


def widths_seen(model, fn, *args, **kwargs) -> tuple[list[int], object]:
    """fn(*args, **kwargs)'s result, and the widths (tokens per row) the model's first layer saw meanwhile: which
    shapes it computed."""
    seen: list[int] = []
    hook = model.blocks[0].register_forward_pre_hook(lambda _m, a: seen.append(a[0].shape[1]))
    try:
        return seen, fn(*args, **kwargs)
    finally:
        hook.remove()
