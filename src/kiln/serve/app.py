"""The FastAPI app: four routers (OpenAI's /v1, the playground's page and /api, the arena, /health and /metrics)
over one shared `ServerState`, behind an access log, a body-size limit and the API key check.

Everything slow happens off the event loop: loading a model in a thread pool, decoding on each model's
batcher thread. The loop only parses, validates, and moves events to clients, so one slow client or a
model loading never stalls the others.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kiln.serve.access_log import AccessLog
from kiln.serve.access_log import writer as access_log
from kiln.serve.arena.store import ArenaStore
from kiln.serve.config import ServeConfig
from kiln.serve.handlers import install_error_handlers
from kiln.serve.middleware import BodyLimit, auth_and_count
from kiln.serve.routes import arena, dashboard, data, docs, openai, ops, playground
from kiln.serve.state import ServerState


def create_app(config: ServeConfig) -> FastAPI:
    """The app serving `config.models` (as given: environment fallbacks are `ServeConfig.resolved`'s job)."""
    server = ServerState.start(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        server.registry.close()  # stop every model's batcher thread
        access_log.flush()  # the last requests' lines, before the process ends

    app = FastAPI(title="kiln", version="1", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.server = server
    app.state.registry = server.registry  # a shortcut for tests and debugging sessions
    app.state.config = config
    app.state.arena = ArenaStore(arena.arena_directory(config))
    install_error_handlers(app)
    app.middleware("http")(auth_and_count)
    for module in (ops, openai, playground, docs, arena, dashboard, data):
        app.include_router(module.router)
    app.mount("/static", playground.static_files(), name="static")
    app.mount(docs.ASSETS_URL, docs.asset_files(), name="docs-assets")  # /docs without a CDN
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)  # before any body is read
    app.add_middleware(AccessLog)  # added last: outermost, so every answer is logged, a 413 too
    return app
