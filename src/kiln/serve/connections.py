"""How uvicorn holds connections: a deadline for reading each request, and a keep-alive timeout.

uvicorn closes an idle keep-alive connection (`timeout_keep_alive`), but a connection that sends part of a request
and then nothing more, or a byte every few seconds (slowloris), is never timed out: each would hold a socket and its
buffers forever. `ReadDeadline` gives every request `read_timeout_s` from its connection (or its first byte, on a
kept-alive connection) until its body is complete; past it the connection is closed. Once a request has been
read, the handler's own time is not limited here (a long generation streams as long as it needs).

The deadline measures the client's time, not the server's: uvicorn stops reading a body past 64 KiB until the
handler asks for more (flow control), and a handler can be slow to ask (an event loop busy with other requests, a
loaded machine). While reading is paused the deadline is paused too, and resumes with the time that was left, so a
client is never cut off for the server's slowness (an upload reset mid-body) and a stalled client is still closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kiln.serve.config import ServeConfig


class PausingFlow(FlowControl):
    """uvicorn's flow control, telling the protocol when the server stops and starts reading its transport."""

    def __init__(self, transport: asyncio.Transport, protocol: ReadDeadline) -> None:
        super().__init__(transport)
        self._protocol = protocol

    def pause_reading(self) -> None:
        super().pause_reading()
        self._protocol._pause()

    def resume_reading(self) -> None:
        super().resume_reading()
        self._protocol._resume()


class ReadDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request is not read within `read_timeout_s` of the
    client's time (time while the server has paused reading does not count)."""

    read_timeout_s = 10.0
    _deadline: asyncio.TimerHandle | None = None
    _left: float | None = None  # seconds the client has left, kept while the server does not read

    def _arm(self) -> None:
        if self._deadline is None and self._left is None:
            if self.flow.read_paused:  # set in connection_made, before the first _arm
                self._left = self.read_timeout_s  # a pipelined request parsed while paused: starts when reading does
            else:
                self._deadline = self.loop.call_later(self.read_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._left = None

    def _pause(self) -> None:
        if self._deadline is not None:
            self._left = max(0.0, self._deadline.when() - self.loop.time())
            self._deadline.cancel()
            self._deadline = None

    def _resume(self) -> None:
        if self._left is not None:
            self._deadline = self.loop.call_later(self._left, self._expired)
            self._left = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()  # the handler, if it waits for the body, sees http.disconnect

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = PausingFlow(transport, self)  # before any request: each cycle takes the protocol's flow
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
