"""The server's access log: one line per request on the `kiln.serve` logger, with what uvicorn's own access log
cannot know (the model, the tokens), replacing it (`uvicorn_options` turns uvicorn's off, so no line is doubled).

    POST /v1/completions model=char 200 tokens=3+16 41 ms

The line is written when the response has been sent in full, so a streamed completion is logged with every token
it streamed and the time it took; a client that hangs up mid-stream is logged too (status as sent, "(client went
away)"). The routes say which model and how many tokens through `note` (request.state), since only they know.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("kiln.serve")


def note(request: Request, *, model: str | None = None, usage: Any = None) -> None:
    """Tell the access log this request's model and its token counts (an object with `prompt_tokens` and
    `completion_tokens`, read when the response ends, so a stream's count is complete)."""
    if model is not None:
        request.state.model = model
    if usage is not None:
        request.state.usage = usage


class AccessLog:
    """ASGI middleware (outermost, so 413s and 401s are logged too) writing one line per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})  # the dict request.state writes to, shared even if a layer copies the scope
        status = 0
        finished = False

        async def send_and_watch(message: Message) -> None:
            nonlocal status, finished
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.info(line(scope, status or 500, time.perf_counter() - started, finished))


def line(scope: Scope, status: int, seconds: float, finished: bool = True) -> str:
    """The access-log line of one request: method, path, model, status, tokens (prompt+completion), time in ms."""
    state = scope.get("state") or {}
    parts = [scope.get("method", "?"), scope.get("path", "?")]
    model = state.get("model")
    if model:
        parts.append(f"model={model}")
    parts.append(str(status))
    usage = state.get("usage")
    if usage is not None:
        parts.append(f"tokens={usage.prompt_tokens}+{usage.completion_tokens}")
    parts.append(f"{seconds * 1000:.0f} ms")
    if not finished:
        parts.append("(client went away)")
    return " ".join(parts)


def model_loaded(name: str, parameters: int, seconds: float, device: str) -> None:
    """The line a model load writes: which, how big, how long it took (the first request to a model waits for it)."""
    log.info("loaded model %s: %s parameters on %s in %.2f s", name, f"{parameters:,}", device, seconds)
