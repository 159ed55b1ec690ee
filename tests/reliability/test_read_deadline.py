"""The read deadline counts the client's time, not the server's: uvicorn stops reading a request body past 64 KiB
until the handler asks for it (flow control), and a handler that is slow to ask (a busy event loop, an endpoint
doing work first) must not get its client's connection closed for it. A client that stalls is still closed.

Real uvicorn on 127.0.0.1 with `kiln serve`'s connection options and raw sockets; the ASGI app is the test's own,
so the handler's delay is exact rather than depending on how loaded the machine is."""

from __future__ import annotations

import asyncio
import socket
import time

from serve_support import serve_app

from kiln.serve import ServeConfig

DEADLINE_S = 1.0
HANDLER_DELAY_S = 2.5  # the handler waits this long before reading: 2.5 deadlines of server-side time


async def slow_reader(scope, receive, send) -> None:
    """Waits HANDLER_DELAY_S, then reads the whole body and answers with its length (or nothing, if cut off)."""
    if scope["type"] != "http":
        return
    await asyncio.sleep(HANDLER_DELAY_S)
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message["body"])
        if not message["more_body"]:
            break
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serving():
    """The test's app behind `kiln serve`'s connection options with a 1 s read deadline; yields the port."""
    return serve_app(slow_reader, ServeConfig(models=".", read_timeout_s=DEADLINE_S))


def post_head(length: int) -> bytes:
    return f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n".encode()


def read_all(s: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection or `timeout` passes."""
    s.settimeout(timeout)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def test_a_body_sent_at_once_is_read_although_the_handler_starts_reading_after_the_deadline() -> None:
    body = b"x" * (1 << 20)  # far past uvicorn's 64 KiB high-water mark: reading pauses until the handler reads
    with serving() as port, socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        s.settimeout(10)
        s.sendall(post_head(len(body)) + body)  # returns once the kernel buffers take it; the client is done
        answer = read_all(s, timeout=15)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.endswith(str(len(body)).encode()), answer[-200:]


def test_a_client_that_stalls_mid_body_is_still_closed_after_the_server_reads_again() -> None:
    """The deadline is paused while the server does not read, not dropped: once the handler reads, a client that
    sent 512 KiB of a promised 1 MiB and stopped is closed within the time it had left."""
    with serving() as port, socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(10)
        s.sendall(post_head(1 << 20) + b"x" * (1 << 19))
        started = time.monotonic()
        answer = read_all(s, timeout=HANDLER_DELAY_S + 8)
        took = time.monotonic() - started
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    # closed after the handler began reading (2.5 s) plus what was left of the 1 s deadline, with slack
    assert took < HANDLER_DELAY_S + 6, f"a stalled client held its connection {took:.1f} s"
