"""The FastAPI app: three routers (OpenAI's /v1, the playground's page and /api, /health and /metrics) over one
shared `ServerState`, behind a body-size limit and the API key check.

Everything slow happens off the event loop: loading a model in a thread pool, decoding on each model's
batcher thread. The loop only parses, validates, and moves events to clients, so one slow client or a
model loading never stalls the others.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from kiln.serve.config import ServeConfig
from kiln.serve.handlers import install_error_handlers
from kiln.serve.middleware import BodyLimit, auth_and_count
from kiln.serve.routes import dashboard, data, openai, ops, playground
from kiln.serve.state import ServerState


def create_app(config: ServeConfig) -> FastAPI:
    """The app serving `config.models` (as given: environment fallbacks are `ServeConfig.resolved`'s job)."""
    server = ServerState.start(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        server.registry.close()  # stop every model's batcher thread

    app = FastAPI(title="kiln", version="1", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.server = server
    app.state.registry = server.registry  # a shortcut for tests and debugging sessions
    app.state.config = config
    install_error_handlers(app)
    app.middleware("http")(auth_and_count)
    for module in (ops, openai, playground, dashboard, data):
        app.include_router(module.router)
    app.mount("/static", playground.static_files(), name="static")
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)  # added last: outermost, before any body is read
    return app
