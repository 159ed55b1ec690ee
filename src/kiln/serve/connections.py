"""How uvicorn holds connections: a deadline for reading each request, and a keep-alive timeout.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`), but a connection that sends part of a request
and then nothing more, or a byte every few seconds (slowloris), is never timed out: each would hold a socket and its
buffers forever. `ReadDeadline` gives every request `read_timeout_s` from its connection (or its first byte, on a
kept-alive connection) until its body is complete; past it the connection is closed. Once a request has been
read, the handler's own time is not limited here (a long generation streams as long as it needs).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kiln.serve.config import ServeConfig


class ReadDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request is not read within `read_timeout_s`."""

    read_timeout_s = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()  # the handler, if it waits for the body, sees http.disconnect

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is closed too

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def uvicorn_options(config: ServeConfig) -> dict[str, Any]:
    """uvicorn.Config keywords for the connection limits of `config` (the CLI's server and the tests' use these)."""
    protocol = type("KilnHTTP", (ReadDeadline,), {"read_timeout_s": config.read_timeout_s})
    # access_log=False: kiln's own access log (access_log.py) has a line per request with the model and tokens
    return {"http": protocol, "timeout_keep_alive": max(1, round(config.read_timeout_s)), "access_log": False}
