"""The server's shared state — config, model registry, metrics — as one object the routers reach per request.

`create_app` puts a `ServerState` on `app.state.server`; a route asks for it with the `Server` dependency
instead of closing over variables, so each router is a plain module and several apps (tests) never share one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from kiln.model.checkpoint import CheckpointError, read_config, resolve_checkpoint
from kiln.serve.config import ServeConfig
from kiln.serve.errors import APIError
from kiln.serve.metrics import Metrics
from kiln.serve.models import CHAT_TOKENS, LoadedModel, ModelRegistry


@dataclass
class ServerState:
    """What every route may need: the options served with, the models, the counters."""

    config: ServeConfig
    registry: ModelRegistry
    metrics: Metrics

    @classmethod
    def start(cls, config: ServeConfig) -> ServerState:
        registry = ModelRegistry(
            config.models,
            max_bytes=int(config.max_memory_gb * (1 << 30)),
            max_batch=config.max_batch,
            max_queue=config.max_queue,
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
        except (CheckpointError, FileNotFoundError, ValueError) as e:
            raise APIError(
                503, f"the model '{name}' cannot be loaded: {e}", param="model", code="model_unavailable"
            ) from e

    def model_card(self, name: str, path: Path) -> dict[str, Any]:
        """OpenAI's model object plus what the playground shows (context, vocabulary, loaded, can chat)."""
        card: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": self.registry.created(name, path),
            "owned_by": "kiln",
        }
        lm = self.registry.loaded.get(name)
        try:
            cfg, _ = read_config(resolve_checkpoint(path))
            card["context_length"] = cfg.block_size
            card["vocab_size"] = cfg.vocab_size
        except CheckpointError:
            pass
        card["loaded"] = lm is not None
        card["chat"] = lm.has_chat_template if lm is not None else has_chat_tokens(path)
        return card


def has_chat_tokens(path: Path) -> bool:
    """Whether a model not yet loaded can chat, from its tokenizer file alone (no weights read)."""
    try:
        meta = json.loads((resolve_checkpoint(path) / "tokenizer" / "kiln-tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, CheckpointError):
        return False
    specials = meta.get("special_tokens") or {}
    return isinstance(specials, dict) and all(t in specials for t in CHAT_TOKENS)


def server_state(request: Request) -> ServerState:
    """The app's `ServerState`, for `Depends`."""
    return request.app.state.server


Server = Annotated[ServerState, Depends(server_state)]
"""A route parameter of this type receives the app's ServerState (and adds nothing to the OpenAPI schema)."""
