"""Whether `kiln serve` can listen where asked, checked before uvicorn starts: a port already in use (another
server, a second `kiln serve`) is one line that says so and how to pick another, not uvicorn's log line and exit
code."""

from __future__ import annotations

import errno
import socket


class PortInUse(OSError):
    """The port is taken on that address; the message names both and the option to change."""


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), as uvicorn would bind it (SO_REUSEADDR, IPv6 for an address with a
    colon); OSError with a one-line message naming the host, the port and what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    # Like uvicorn: a port whose last server has just exited (TIME_WAIT) is free again; one with a live listener
    # is not, whatever this option says.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        other = port + 1 if 0 < port < 65535 else 8001
        if e.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"port {port} on {host} is in use (another kiln serve?): pick another with port={other} "
                f"(or --port {other}), or stop what listens there"
            ) from None
        if e.errno == errno.EACCES:
            raise OSError(f"cannot listen on port {port} of {host}: permission denied (ports below 1024 need root); "
                          f"pick another with port={other}") from None  # fmt: skip
        reason = (e.strerror or str(e)).lower()
        where = f"cannot listen on {host} port {port}"
        raise OSError(f"{where}: {reason} (is host={host} an address of this machine?)") from None
    sock.set_inheritable(True)
    return sock
