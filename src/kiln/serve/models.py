"""Which models the server offers, and the ones it has in memory.

Every checkpoint under the models directory is offered under its path relative to that directory (a
training run's directory counts as one model: its best checkpoint). A model is loaded on first use —
through `load_checkpoint`, so safetensors only, never a pickle — and gets its own `ContinuousBatcher` on
a worker thread. Loaded models are kept in least-recently-used order within a memory budget (weights +
KV cache); an idle model is unloaded when a newer one needs the room. A busy one is never unloaded
under its requests: the budget is then exceeded until it is idle.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kiln.generate.batcher import ContinuousBatcher
from kiln.generate.context import end_of_text_ids
from kiln.model import cpu_fast, int8_weights
from kiln.model.checkpoint import CONFIG, WEIGHTS, CheckpointError, load_checkpoint, read_config, resolve_checkpoint
from kiln.model.config import GPTConfig
from kiln.model.gpt import GPT
from kiln.serve.access_log import model_loaded
from kiln.tokenizer import ByteTokenizer, Tokenizer
from kiln.tokenizer.chat import has_chat_tokens


@dataclass
class LoadedModel:
    """A model in memory with the thread that decodes for it."""

    name: str
    path: Path
    model: GPT
    tokenizer: Tokenizer
    batcher: ContinuousBatcher
    created: int
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def context(self) -> int:
        return self.model.config.block_size

    @property
    def has_chat_template(self) -> bool:
        return has_chat_tokens(self.tokenizer)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return end_of_text_ids(self.tokenizer)  # the one rule kiln generate stops by too

    def nbytes(self) -> int:
        """Weights, the inference copies of them made at the first decode (oneDNN-packed, int8) and the KV cache."""
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return weights + cpu_fast.cached_bytes(self.model) + self.batcher.cache.nbytes()

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self.batcher.run, args=(self.stop,), name=f"kiln-{self.name}", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.batcher.wake()
        if self.thread is not None:
            self.thread.join(timeout=10)


def is_checkpoint(path: Path) -> bool:
    return (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def is_run(path: Path) -> bool:
    return (path / "checkpoints").is_dir()


def discover(root: Path) -> dict[str, Path]:
    """name -> directory for every checkpoint or training run under `root`; a run's own step directories
    are offered through the run (its best checkpoint), not one by one."""
    root = root.resolve()
    if is_checkpoint(root) or is_run(root):
        return {root.name: root}
    found: dict[str, Path] = {}
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        path = Path(dirpath)
        if path != root and (is_run(path) or is_checkpoint(path)):
            found[path.relative_to(root).as_posix()] = path
            dirnames[:] = []
    return found


class ModelTooLarge(ValueError):
    """A checkpoint whose config asks for more memory than the server may use (found before allocating any)."""


def estimate_bytes(cfg: GPTConfig, max_batch: int) -> tuple[int, int]:
    """(weights, KV cache) in bytes that `cfg` needs once loaded for `max_batch` rows, from its config alone: the
    model is built on the meta device (shapes only, no memory), the cache sized as `ContinuousBatcher` sizes it."""
    cfg.validate()
    with torch.device("meta"):
        model = GPT(cfg)
    weights = sum(p.numel() * 4 for p in model.parameters())  # float32, as load_checkpoint builds it
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    slots = max_batch * 2 * cfg.block_size  # the batcher's cache: twice the context, for every row
    cache = 2 * cfg.n_layer * cfg.kv_heads * cfg.head_dim * slots * 4 + slots * (8 + 1)  # k, v; pos, valid
    return weights, cache


class ModelRegistry:
    """Offers the checkpoints under `root`; loads them on demand; evicts idle ones past `max_bytes`."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int = 4 << 30,
        max_batch: int = 32,
        max_queue: int = 256,
        max_model_bytes: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: str = "cpu",
        int8_weights: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"models directory {self.root} does not exist")
        self.max_bytes = max_bytes
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_model_bytes = max_model_bytes  # a model estimated larger than this is refused before it is built
        self.dtype = dtype  # loaded models are cast to it (float32 keeps outputs exact)
        self.device = device
        self.int8_weights = int8_weights  # dtype=int8: linear layers decode on int8 copies of their weights
        self.loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._created: dict[str, int] = {}

    def available(self) -> dict[str, Path]:
        return discover(self.root)

    def created(self, name: str, path: Path) -> int:
        if name not in self._created:
            try:
                self._created[name] = int(path.stat().st_mtime)
            except OSError:
                self._created[name] = int(time.time())
        return self._created[name]

    def get(self, name: str) -> LoadedModel:
        """The loaded model called `name`, loading it if needed. KeyError: no such model;
        CheckpointError: it is there but cannot be loaded."""
        with self._lock:
            lm = self.loaded.get(name)
            if lm is not None:
                self.loaded.move_to_end(name)
                self._evict(keep=name)  # a model that was busy at the last load may be idle now
                return lm
            gate = self._loading.setdefault(name, threading.Lock())
        with gate:  # one load per name, however many requests ask at once
            with self._lock:
                if name in self.loaded:
                    return self.loaded[name]
            path = self.available().get(name)
            if path is None:
                raise KeyError(name)
            self._check_size(name, path)
            started = time.perf_counter()
            model, tokenizer, _ = load_checkpoint(path, device=self.device)
            model = model.to(self.dtype)
            if self.int8_weights:
                int8_weights.enable(model)
            tokenizer = tokenizer or ByteTokenizer()
            if model.config.vocab_size < tokenizer.vocab_size:
                raise CheckpointError(
                    f"{path}: the model's vocabulary ({model.config.vocab_size}) is smaller than its tokenizer's"
                )
            batcher = ContinuousBatcher(model, tokenizer, max_batch=self.max_batch, max_queue=self.max_queue)
            lm = LoadedModel(name, path, model, tokenizer, batcher, self.created(name, path))
            lm.start()
            parameters = sum(p.numel() for p in model.parameters())
            model_loaded(name, parameters, time.perf_counter() - started, str(batcher.device))
            with self._lock:
                self.loaded[name] = lm
                self._evict(keep=name)
            return lm

    def _check_size(self, name: str, path: Path) -> None:
        """ModelTooLarge if the checkpoint's config asks for more than `max_model_bytes` (weights + KV cache)."""
        if self.max_model_bytes is None:
            return
        cfg, _ = read_config(resolve_checkpoint(path))
        try:
            # One row: the least the model needs to serve at all. The batcher's cache grows with the rows in use
            # and is compacted (a full max_batch x 2 x context is the rare worst case), so refusing on that would
            # turn away models that serve fine (gpt2 at the defaults); an absurd context is refused either way.
            weights, cache = estimate_bytes(cfg, 1)
        except (ValueError, TypeError, RuntimeError) as e:
            raise CheckpointError(f"its config.json is invalid ({e})") from None
        if weights + cache > self.max_model_bytes:
            gb = 1 << 30
            raise ModelTooLarge(
                f"the model '{name}' needs about {(weights + cache) / gb:,.1f} GB (weights {weights / gb:,.1f} GB, "
                f"KV cache {cache / gb:,.1f} GB for one sequence of block_size {cfg.block_size}), "
                f"more than --max-memory-gb {self.max_model_bytes / gb:g}: raise it"
            )

    def _evict(self, keep: str) -> None:
        total = sum(m.nbytes() for m in self.loaded.values())
        for name in list(self.loaded):
            if total <= self.max_bytes:
                break
            lm = self.loaded[name]
            if name == keep or lm.batcher.busy:
                continue
            del self.loaded[name]
            total -= lm.nbytes()
            lm.close()

    def queue_depth(self) -> int:
        return sum(m.batcher.queue_depth for m in list(self.loaded.values()))

    def active(self) -> int:
        return sum(len(m.batcher.active) for m in list(self.loaded.values()))

    def close(self) -> None:
        with self._lock:
            models = list(self.loaded.values())
            self.loaded.clear()
        for lm in models:
            lm.close()
