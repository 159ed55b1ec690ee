"""The server's shared state — config, model registry, metrics — as one object the routers reach per request.

`create_app` puts a `ServerState` on `app.state.server`; a route asks for it with the `Server` dependency
instead of closing over variables, so each router is a plain module and several apps (tests) never share one.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from kiln.model.checkpoint import CheckpointError, read_config, resolve_checkpoint
from kiln.model.inference_dtype import resolve as resolve_dtype
from kiln.serve.config import ServeConfig
from kiln.serve.errors import APIError
from kiln.serve.metrics import Metrics
from kiln.serve.models import LoadedModel, ModelRegistry, ModelTooLarge
from kiln.tokenizer.chat import CHATML, LLAMA3

log = logging.getLogger("kiln.serve")

T = TypeVar("T")

# CPU-heavy request work (/api/tokenize: tokenizing megabytes and encoding the JSON) runs in at most this many
# threads, never on the event loop; more would only contend for the same cores (and the GIL) with the models'
# batcher threads.
CPU_THREADS = 2
# Requests holding or waiting for one of those threads; past it a request gets 429 instead of a growing queue.
MAX_CPU_PENDING = 64


@dataclass
class ServerState:
    """What every route may need: the options served with, the models, the counters."""

    config: ServeConfig
    registry: ModelRegistry
    metrics: Metrics
    cpu_pending: int = 0
    _cpu_limiter: anyio.CapacityLimiter | None = field(default=None, repr=False)

    async def cpu(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on one of `CPU_THREADS` worker threads, so the event loop keeps answering (/health, streams)
        however long it takes; 429 when `MAX_CPU_PENDING` requests already hold or wait for one."""
        if self._cpu_limiter is None:
            self._cpu_limiter = anyio.CapacityLimiter(CPU_THREADS)
        if self.cpu_pending >= MAX_CPU_PENDING:
            raise APIError(429, "the server is busy tokenizing other requests; retry later", code="queue_full")
        self.cpu_pending += 1
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._cpu_limiter)
        finally:
            self.cpu_pending -= 1

    @classmethod
    def start(cls, config: ServeConfig) -> ServerState:
        registry = ModelRegistry(
            config.models,
            max_bytes=int(config.max_memory_gb * (1 << 30)),
            max_batch=config.max_batch,
            max_queue=config.max_queue,
            max_model_bytes=int(config.max_memory_gb * (1 << 30)),
            dtype=resolve_dtype(config.dtype, config.device),
            int8_weights=config.dtype == "int8",
            device=config.device,
        )
        return cls(config, registry, Metrics(registry.queue_depth, registry.active))

    async def available(self) -> dict[str, Path]:
        """name -> directory of every model offered (the directory is walked off the event loop)."""
        return await run_in_threadpool(self.registry.available)

    async def load(self, name: str) -> LoadedModel:
        """The model called `name`, loaded in a thread pool if needed; 404 if there is none, 503 if it is broken."""
        try:
            return await run_in_threadpool(self.registry.get, name)
        except KeyError:
            raise APIError(404, f"the model '{name}' does not exist", param="model", code="model_not_found") from None
        except ModelTooLarge as e:  # its message holds sizes and option names only
            raise APIError(503, str(e), param="model", code="model_too_large") from None
        except (CheckpointError, OSError, ValueError) as e:
            # The exception names absolute paths and may quote a file (a tokenizer's bad line): that goes to the
            # operator's log, the client learns which model and what kind of failure.
            log.warning("the model '%s' cannot be loaded: %s", name, e)
            raise APIError(
                503,
                f"the model '{name}' cannot be loaded: {load_failure(e)} (the server's log names the file)",
                param="model",
                code="model_unavailable",
            ) from None

    def model_card(self, name: str, path: Path) -> dict[str, Any]:
        """OpenAI's model object plus what the playground shows: context, vocabulary, default prompt, loaded, chat."""
        card: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": self.registry.created(name, path),
            "owned_by": "kiln",
        }
        lm = self.registry.loaded.get(name)
        try:
            cfg, meta = read_config(resolve_checkpoint(path))
            card["context_length"] = cfg.block_size
            card["vocab_size"] = cfg.vocab_size
            # written by `kiln train` (its training data's first words, or the run's default_prompt setting)
            prompt = meta.get("default_prompt")
            if isinstance(prompt, str) and prompt:
                card["default_prompt"] = prompt
        except CheckpointError:
            pass
        card["loaded"] = lm is not None
        card["chat"] = lm.has_chat_template if lm is not None else has_chat_tokens(path)
        return card


def load_failure(e: Exception) -> str:
    """What went wrong loading a model, in words that hold no path and no file content."""
    if isinstance(e, CheckpointError):
        return "its checkpoint is incomplete, corrupt, or does not match its config.json"
    if isinstance(e, OSError):
        return "a file of its checkpoint cannot be read"
    return "its tokenizer or config files are invalid"


def has_chat_tokens(path: Path) -> bool:
    """Whether a model not yet loaded can chat, from its tokenizer file alone (no weights read). Cached by the
    tokenizer file's mtime: an imported model's tokenizer.json can be megabytes, and every model listing asks."""
    try:
        meta = resolve_checkpoint(path) / "tokenizer" / "kiln-tokenizer.json"
        return _chat_tokens_in(meta.parent, meta.stat().st_mtime_ns)
    except (OSError, CheckpointError):
        return False


@functools.lru_cache(maxsize=256)
def _chat_tokens_in(tok_dir: Path, _mtime_ns: int) -> bool:
    try:
        meta = json.loads((tok_dir / "kiln-tokenizer.json").read_text(encoding="utf-8"))
        specials = meta.get("special_tokens") or {}
        if meta.get("kind") == "hf":  # an imported tokenizer: its special tokens are tokenizer.json's added ones
            added = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8")).get("added_tokens") or []
            specials = {t["content"]: t["id"] for t in added if isinstance(t, dict) and t.get("special")}
    except (OSError, ValueError, CheckpointError, KeyError, TypeError, AttributeError):
        return False
    return isinstance(specials, dict) and any(all(t in specials for t in tpl.tokens) for tpl in (CHATML, LLAMA3))


def server_state(request: Request) -> ServerState:
    """The app's `ServerState`, for `Depends`."""
    return request.app.state.server


async def _server(request: Request) -> ServerState:
    # async, so FastAPI resolves it on the event loop: a sync dependency would cost every request a hop to a
    # thread-pool thread (and the allocator an arena per thread) just to read app.state
    return server_state(request)


Server = Annotated[ServerState, Depends(_server)]
"""A route parameter of this type receives the app's ServerState (and adds nothing to the OpenAPI schema)."""
