"""The server's model registry: which directories are models, loading on first use (safetensors only),
LRU eviction within a memory budget that never unloads a busy model, and clear errors for broken ones."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from kiln.generate import SamplingParams
from kiln.generate.batcher import Request
from kiln.model.checkpoint import CheckpointError
from kiln.serve.models import ModelRegistry, discover


def test_discover_runs_checkpoints_and_nesting(serve_models: Path, tmp_path: Path):
    assert set(discover(serve_models)) == {"bpe-chat", "char"}
    root = tmp_path / "zoo"
    shutil.copytree(serve_models / "char", root / "exp" / "char-run")
    step = next((serve_models / "bpe-chat" / "checkpoints").iterdir())
    shutil.copytree(step, root / "single")
    shutil.copytree(step, root / ".hidden" / "x")
    found = discover(root)
    assert set(found) == {"exp/char-run", "single"}  # a run's step directories are not models of their own
    # a models directory that is itself one checkpoint or run
    assert list(discover(root / "single")) == ["single"]
    assert list(discover(root / "exp" / "char-run")) == ["char-run"]


def test_load_on_first_use_and_lru_eviction(serve_models: Path):
    reg = ModelRegistry(serve_models, max_bytes=1)  # room for one model only
    try:
        a = reg.get("char")
        assert reg.get("char") is a and list(reg.loaded) == ["char"]
        reg.get("bpe-chat")
        assert list(reg.loaded) == ["bpe-chat"]  # char was idle: unloaded
        assert a.stop.is_set() and a.thread is not None and not a.thread.is_alive()
        with pytest.raises(KeyError):
            reg.get("no-such-model")
    finally:
        reg.close()


def test_a_busy_model_is_not_evicted(serve_models: Path):
    reg = ModelRegistry(serve_models, max_bytes=1)
    try:
        lm = reg.get("bpe-chat")
        started, release, done = threading.Event(), threading.Event(), threading.Event()

        def consumer(ev) -> None:  # holds the worker inside the request until released: busy for sure
            started.set()
            release.wait(timeout=30)
            if ev.finish_reason:
                done.set()

        lm.batcher.submit(Request([1, 2, 3], SamplingParams(temperature=0, max_new_tokens=3), consumer))
        assert started.wait(timeout=30)
        reg.get("char")
        assert set(reg.loaded) == {"bpe-chat", "char"}  # over budget, but bpe-chat is serving a request
        release.set()
        assert done.wait(timeout=30)
        reg.get("bpe-chat")  # now the idle one (char) goes
        assert list(reg.loaded) == ["bpe-chat"]
    finally:
        reg.close()


def test_concurrent_first_requests_load_once(serve_models: Path):
    reg = ModelRegistry(serve_models)
    try:
        got: list = []
        threads = [threading.Thread(target=lambda: got.append(reg.get("char"))) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 4 and all(g is got[0] for g in got)
    finally:
        reg.close()


def test_corrupt_weights_are_a_clear_error(serve_models: Path, tmp_path: Path):
    root = tmp_path / "models"
    shutil.copytree(serve_models / "char", root / "char")
    weights = next((root / "char" / "checkpoints").iterdir()) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    reg = ModelRegistry(root)
    try:
        with pytest.raises(CheckpointError, match="corrupt"):
            reg.get("char")
        assert not reg.loaded
    finally:
        reg.close()


def test_missing_models_directory():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ModelRegistry(Path("/nonexistent/models"))


def decode_a_few(lm) -> None:
    """Greedy-decode up to 5 tokens through the model's batcher, as a request of the server would."""
    done = threading.Event()
    tokens: list[int] = []

    def consumer(ev) -> None:
        tokens.append(ev.token_id)
        if ev.finish_reason:
            done.set()

    lm.batcher.submit(Request([1, 2, 3], SamplingParams(temperature=0, max_new_tokens=5), consumer))
    assert done.wait(timeout=30)
    assert 1 <= len(tokens) <= 5


def test_models_load_in_the_configured_dtype_and_decode(serve_models: Path):
    import torch

    from kiln.model.gpt import cache_dtype

    reg = ModelRegistry(serve_models, dtype=torch.bfloat16)
    try:
        lm = reg.get("char")
        assert next(lm.model.parameters()).dtype == torch.bfloat16
        # bf16 keys and values, or fp32 ones where this CPU attends faster in fp32 (gpt.cache_dtype)
        assert lm.batcher.cache.k.dtype == cache_dtype(next(lm.model.parameters()))
        assert lm.batcher.cache.k.dtype in (torch.bfloat16, torch.float32)
        decode_a_few(lm)
    finally:
        reg.close()


def test_int8_models_decode_on_int8_copies_of_their_weights(serve_models: Path):
    """`kiln serve dtype=int8`: the batcher's decode steps run the linear layers on int8 weights."""
    import torch

    from kiln.model import int8_weights

    if not int8_weights.available():
        pytest.skip("this PyTorch lacks the int8 CPU kernel")
    reg = ModelRegistry(serve_models, int8_weights=True)
    try:
        lm = reg.get("char")
        assert int8_weights.enabled(lm.model) and next(lm.model.parameters()).dtype == torch.float32
        decode_a_few(lm)
        copies = [m.__dict__["_kiln_int8_weights"][1] for m in lm.model.modules() if "_kiln_int8_weights" in m.__dict__]
        assert copies and all(q.dtype == torch.int8 for q in copies)
        # The registry's memory budget counts the copies: one byte a weight, two a row's bf16 scale.
        weights = sum(p.numel() * p.element_size() for p in lm.model.parameters())
        int8_bytes = sum(q.numel() + 2 * q.shape[0] for q in copies)
        packed = sum(t.numel() * 4 for m in lm.model.modules() for _, t in m.__dict__.get("_kiln_packed", {}).values())
        assert lm.nbytes() == weights + int8_bytes + packed + lm.batcher.cache.nbytes()
    finally:
        reg.close()


def test_serve_device_is_checked_before_anything_loads(tmp_path: Path):
    import torch

    from kiln.serve.config import ServeConfig

    ServeConfig(models=tmp_path, device="cpu").validate()
    with pytest.raises(ValueError, match="device=gpu0: not a device"):
        ServeConfig(models=tmp_path, device="gpu0").validate()
    with pytest.raises(ValueError, match="device=meta: kiln serve runs on cpu or cuda"):
        ServeConfig(models=tmp_path, device="meta").validate()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device=cuda: CUDA is not available here"):
            ServeConfig(models=tmp_path, device="cuda").validate()
