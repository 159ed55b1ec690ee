"""The server's access log: one line per request on the `kiln.serve` logger, with what uvicorn's own access log
cannot know (the model, the tokens), replacing it (`uvicorn_options` turns uvicorn's off, so no line is doubled).

    POST /v1/completions model=char 200 tokens=3+16 41 ms

The line is written when the response has been sent in full, so a streamed completion is logged with every token
it streamed and the time it took; a client that hangs up mid-stream is logged too (status as sent, "(client went
away)"). The routes say which model and how many tokens through `note` (request.state), since only they know.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("kiln.serve")

QUEUE_LINES = 10_000
"""Access-log lines waiting to be written; past this many, new lines are dropped (and counted) rather than wait."""


class _Writer:
    """Writes access-log lines from a daemon thread, never from the event loop: a stderr that nobody reads (a full
    pipe: `kiln serve 2>&1 | slow-consumer`, a parent process that never drains it) blocks a write, and one blocked
    write on the loop would freeze every request. Here it stalls this thread only; the bounded queue then drops
    lines (counted in `dropped`) instead of growing without end."""

    def __init__(self) -> None:
        self.lines: queue.Queue[str] = queue.Queue(maxsize=QUEUE_LINES)
        self.dropped = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, text: str) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="kiln-access-log", daemon=True)
                    self._thread.start()
        try:
            self.lines.put_nowait(text)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            text = self.lines.get()
            log.info(text)
            self.lines.task_done()

    def flush(self, timeout: float = 2.0) -> None:
        """Wait (up to `timeout` s) until the queued lines are written: tests, and a clean shutdown."""
        deadline = time.monotonic() + timeout
        while self.lines.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)


writer = _Writer()


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
                writer.put(line(scope, status or 500, time.perf_counter() - started, finished))


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
