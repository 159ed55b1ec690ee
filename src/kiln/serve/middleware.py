"""What wraps every request: a cap on the body's size (outermost, before anything reads it), and the API key
check with per-route request counting."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiln.serve.errors import APIError, error_body
from kiln.serve.handlers import api_error_response
from kiln.serve.state import server_state

PROTECTED = ("/v1", "/api", "/metrics")  # the page and /health stay open, so a browser can ask for the key


class BodyLimit:
    """413 for a body over `limit` bytes, by its Content-Length or, for a chunked upload, as it arrives."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = JSONResponse(error_body(413, f"the request body is larger than {self.limit} bytes"), status_code=413)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                await too_big(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server delivers no more than Content-Length bytes
            return
        # No Content-Length (a chunked upload): read the body here, up to the limit, then replay it. An error
        # raised from inside `receive` would reach FastAPI's body parsing, which turns any error into a 400.
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


async def auth_and_count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """401 without the right key on a protected path (compared in constant time); count every answer by route."""
    server = server_state(request)
    path = request.url.path
    key = server.config.api_key
    if key and path.startswith(PROTECTED):
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            refused = APIError(
                401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key"
            )
            # labelled by the protected prefix, not the path: every distinct path would be a new series, kept forever
            prefix = next(p for p in PROTECTED if path.startswith(p))
            server.metrics.requests.labels(route=prefix, status="401").inc()
            return api_error_response(refused)
    response = await call_next(request)
    route = request.scope.get("route")
    label = getattr(route, "path", "other")
    server.metrics.requests.labels(route=label, status=str(response.status_code)).inc()
    return response
