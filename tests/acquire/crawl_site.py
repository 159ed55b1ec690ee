"""A real HTTP server for the crawler tests (a helper module, not a test file).

`SiteServer(site)` serves a `Site` on 127.0.0.1 at an OS-chosen port from a background thread
(`ThreadingHTTPServer`, daemon threads) and records every request it gets (path as sent, Host header,
User-Agent, start and end times) in a thread-safe list, so a test can assert on what was fetched, how often
and when. Use it as a context manager:

    with SiteServer(TrapSite()) as server:
        run(CrawlConfig(seeds=[server.url("/")], ...))
        assert server.count("/a") == 1

Sites:
- `TrapSite`: a small site full of crawler traps (duplicate spellings of one URL, redirect loops and long
  chains, 404/500/flaky/slow/huge responses, robots.txt exclusions, binary files, a Latin-1 page, links out of
  scope, nofollow, mailto/javascript, <base href>, a depth chain, malformed HTML).
- `TreeSite(n)`: `n` plain pages that link to each other (a binary tree plus back links), for resume tests.
- `HostsSite(hosts)`: a home page linking to a page on each of several host names, for scope tests.
- `StaticSite(directory)`: files from a directory, like `python -m http.server` (404 for missing files).
"""

from __future__ import annotations

import mimetypes
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urlsplit

HTML = "text/html; charset=utf-8"


@dataclass
class Response:
    """What the server answers: status, headers, body, and how long to wait before answering."""

    status: int = 200
    body: bytes = b""
    content_type: str | None = HTML
    headers: list[tuple[str, str]] = field(default_factory=list)
    sleep: float = 0.0


@dataclass
class Request:
    """One request as the server saw it (times are time.monotonic(); `end` is 0.0 until it was answered)."""

    path: str
    host: str
    user_agent: str
    start: float
    end: float = 0.0


def page(title: str, links: list[str] | tuple[str, ...] = (), extra: str = "") -> bytes:
    """A small UTF-8 HTML page with a title, some text and the given links."""
    anchors = "\n".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title></head>\n"
        f"<body><h1>{title}</h1><p>Some text about {title}.</p>\n<ul>\n{anchors}\n</ul>{extra}</body></html>\n"
    ).encode()


class Site:
    """Answers one request. `base` is the server's own origin (http://127.0.0.1:PORT), for absolute links."""

    base = ""

    def respond(self, path: str, host: str = "") -> Response:
        """The response to a GET of `path` (the request target as sent) with this Host header."""
        raise NotImplementedError


class TrapSite(Site):
    """The trap site. `PAGES` lists the paths (as the server receives them) that a complete crawl writes to WARC
    (with max_redirects=5 and retries >= 1; /huge needs max_page_mb < 3 to be truncated); `body(path)` is what the
    server serves there."""

    HUGE_BYTES = 3 * (1 << 20)
    SLOW_SECONDS = 1.5
    DEPTH = 6  # /d1 -> /d2 -> ... -> /d6
    CHAIN = 20  # /chain/0 -> /chain/1 -> ... -> /chain/20 (a page)

    # Paths a complete crawl writes, with their depth and the path of the page (or redirect) that led there.
    PAGES: ClassVar[dict[str, tuple[int, str | None]]] = {
        "/": (0, None),
        "/a": (1, "/"),
        "/q?x=1&y=2": (1, "/"),
        "/~user": (1, "/"),
        "/new": (1, "/old"),
        "/flaky": (1, "/"),
        "/huge": (1, "/"),
        "/latin1": (1, "/"),
        "/latin1-target": (2, "/latin1"),
        "/based/page": (1, "/"),
        "/base-target/rel": (2, "/based/page"),
        "/malformed": (1, "/"),
        "/from-malformed": (2, "/malformed"),
        "/metanofollow": (1, "/"),
        **{f"/d{i}": (i, "/" if i == 1 else f"/d{i - 1}") for i in range(1, DEPTH + 1)},
    }
    # Linked from somewhere but never to be requested by a polite, in-scope crawler.
    NEVER = ("/private/secret", "/private/", "/nofollow-target", "/meta-hidden", "/x", "/elsewhere")

    def __init__(self, crawl_delay: float | None = None) -> None:
        """`crawl_delay`: add `Crawl-delay: <seconds>` to robots.txt (the second variant of the site)."""
        self.crawl_delay = crawl_delay
        self.lock = threading.Lock()
        self.flaky_hits = 0

    def root_links(self) -> list[str]:
        """The hrefs on / (besides two nofollow links), many of them traps."""
        host = self.base.split("//", 1)[1]
        return [
            # One page, many spellings: all must collapse to http://127.0.0.1:PORT/a.
            "/a",
            "/a#frag",
            "/./a",
            "/b/../a",
            f"HTTP://{host}/a",
            f"http://{host}/a?",
            f"{self.base}/a#top",
            # Same query, two orders; the same path with an escaped and a plain unreserved character.
            "/q?x=1&y=2",
            "/q?y=2&x=1",
            "/%7Euser",
            "/~user",
            # Redirects: a loop, a chain longer than max_redirects, a plain one, one out of scope.
            "/loop1",
            "/chain/0",
            "/old",
            "/away",
            # Errors.
            "/missing",
            "/flaky",
            "/always500",
            "/slow",
            "/huge",
            # robots.txt keeps us out of /private/.
            "/private/secret",
            "/private/",
            # Not HTML.
            "/img.png",
            "/doc.pdf",
            # Other encodings, <base href>, malformed HTML, meta robots nofollow.
            "/latin1",
            "/based/page",
            "/malformed",
            "/metanofollow",
            # Out of scope: another host, and localhost (not the same host as 127.0.0.1).
            "http://example.invalid/x",
            f"http://localhost:{host.split(':')[1]}/elsewhere",
            # Not crawlable.
            "mailto:someone@example.com",
            "javascript:alert(1)",
            # The depth chain.
            "/d1",
        ]

    def body(self, path: str) -> bytes:
        """What the server serves at `path` (without counting a hit on /flaky or sleeping on /slow)."""
        return self.respond(path, count=False).body

    def respond(self, path: str, host: str = "", count: bool = True) -> Response:
        """The trap site's answer; `count=False` peeks without side effects (no /flaky hit, no sleep)."""
        route = urlsplit(path).path
        if route == "/robots.txt":
            text = "User-agent: *\nDisallow: /private/\n"
            if self.crawl_delay is not None:
                text += f"Crawl-delay: {self.crawl_delay}\n"
            return Response(body=text.encode(), content_type="text/plain")
        if route == "/":
            links = "\n".join(f'<a href="{h}">link</a>' for h in self.root_links())
            extra = '<a rel="nofollow" href="/nofollow-target">nf</a><a rel="external nofollow" href="/private/">p</a>'
            return Response(body=f"<html><body><h1>Home</h1>{links}{extra}</body></html>".encode())
        if route in ("/a", "/~user", "/new", "/latin1-target", "/base-target/rel", "/from-malformed"):
            return Response(body=page(route, ["/", "/a"]))
        if route == "/q":
            return Response(body=page("query", ["/q?y=2&x=1"]))
        if route == "/loop1":
            return Response(302, content_type=None, headers=[("Location", "/loop2")])
        if route == "/loop2":
            return Response(302, content_type=None, headers=[("Location", f"{self.base}/loop1")])
        if route.startswith("/chain/"):
            n = int(route.rsplit("/", 1)[1])
            if n < self.CHAIN:
                return Response(301, content_type=None, headers=[("Location", f"/chain/{n + 1}")])
            return Response(body=page("end of the chain"))
        if route == "/old":
            return Response(301, content_type=None, headers=[("Location", "/new")])
        if route == "/away":
            port = self.base.rsplit(":", 1)[1]
            return Response(302, content_type=None, headers=[("Location", f"http://localhost:{port}/x")])
        if route == "/flaky":
            with self.lock:
                first = self.flaky_hits == 0
                self.flaky_hits += count
            if first and count:
                return Response(500, b"<html>try again</html>")
            return Response(body=page("flaky, fine now"))
        if route == "/always500":
            return Response(500, b"<html>broken</html>")
        if route == "/slow":
            return Response(body=page("slow"), sleep=self.SLOW_SECONDS if count else 0.0)
        if route == "/huge":
            head = b"<html><body><a href='/a'>a</a>\n"
            line = b"<p>" + b"0123456789" * 12 + b"</p>\n"
            return Response(body=head + line * (self.HUGE_BYTES // len(line)) + b"</body></html>")
        if route.startswith("/private/"):
            return Response(body=page("secret"))
        if route == "/img.png":
            return Response(body=b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, content_type="image/png")
        if route == "/doc.pdf":
            return Response(body=b"%PDF-1.4\n" + b"0" * 5000 + b"\n%%EOF\n", content_type="application/pdf")
        if route == "/latin1":
            text = (
                '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head>'
                '<body><p>Un caf\xe9 cr\xe8me, s\'il vous pla\xeet.</p><a href="/latin1-target">suite</a></body></html>'
            )
            return Response(body=text.encode("latin-1"), content_type="text/html")
        if route == "/based/page":
            base = f'<base href="{self.base}/base-target/">'
            return Response(body=f"<html><head>{base}</head><body><a href='rel'>r</a></body></html>".encode())
        if route == "/malformed":
            body = (
                b"<html><body><div><p>unclosed <b>bold <i>both\xff\xfe\x00\x81 garbage \xc3\x28 bytes"
                b"<table><tr><td>cell <a href='/from-malformed'>link</a> <p <<< >>> </div></div></span>"
            )
            return Response(body=body)
        if route == "/metanofollow":
            meta = '<meta name="robots" content="noindex, NOFOLLOW">'
            return Response(body=page("meta nofollow", ["/meta-hidden"], extra=meta))
        if route.startswith("/d") and route[2:].isdigit():
            n = int(route[2:])
            return Response(body=page(f"depth {n}", [f"/d{n + 1}"] if n < self.DEPTH else []))
        return Response(404, b"<html>not found</html>")


class TreeSite(Site):
    """`n` plain HTML pages /p/0 .. /p/{n-1}: page i links to 2i+1, 2i+2 (a binary tree), its parent and /p/0.
    robots.txt answers `robots_status` (404: no rules; 200: allow everything; 5xx: the crawler must stay out)."""

    def __init__(self, n: int, pad: int = 2000, robots_status: int = 404) -> None:
        self.n = n
        self.pad = pad
        self.robots_status = robots_status

    @property
    def pages(self) -> list[str]:
        """Every page's path."""
        return [f"/p/{i}" for i in range(self.n)]

    def body(self, path: str) -> bytes:
        """What the server serves at /p/i."""
        i = int(path.rsplit("/", 1)[1])
        links = [f"/p/{j}" for j in (2 * i + 1, 2 * i + 2, (i - 1) // 2, 0) if 0 <= j < self.n]
        return page(f"page {i}", links, extra="<p>" + "filler " * (self.pad // 7) + "</p>")

    def respond(self, path: str, host: str = "") -> Response:
        route = urlsplit(path).path
        if route == "/robots.txt":
            text = "User-agent: *\nDisallow:\n"
            return Response(self.robots_status, text.encode(), content_type="text/plain")
        if route.startswith("/p/") and route[3:].isdigit() and int(route[3:]) < self.n:
            return Response(body=self.body(route))
        return Response(404, b"<html>not found</html>")


class HostsSite(Site):
    """One tiny site under several host names (a test maps them all to 127.0.0.1): `/` on any host links to
    `/page` on every host in `hosts`; `/page` links nowhere; no robots.txt."""

    def __init__(self, hosts: list[str]) -> None:
        self.hosts = hosts

    def respond(self, path: str, host: str = "") -> Response:
        port = self.base.rsplit(":", 1)[1]
        route = urlsplit(path).path
        if route == "/":
            return Response(body=page(f"home of {host}", [f"http://{h}:{port}/page" for h in self.hosts]))
        if route == "/page":
            return Response(body=page(f"page on {host}"))
        return Response(404, b"<html>not found</html>")


class StaticSite(Site):
    """Files under `root` (a directory path maps to its index.html), with types from `mimetypes`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def respond(self, path: str, host: str = "") -> Response:
        rel = unquote(urlsplit(path).path).lstrip("/")
        target = (self.root / rel).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(self.root) or not target.is_file():
            return Response(404, b"<html>not found</html>")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return Response(body=target.read_bytes(), content_type=kind)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, every response has a Content-Length
    disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stalls)
    server: _Server
    timeout = 10  # an idle keep-alive connection is dropped after this

    def do_GET(self) -> None:
        """Log the request, then answer it from the site (sleeping first if the site says so)."""
        entry = Request(self.path, self.headers.get("Host", ""), self.headers.get("User-Agent", ""), time.monotonic())
        self.server.owner._log(entry)
        try:
            resp = self.server.owner.site.respond(self.path, entry.host)
            if resp.sleep:
                self.server.owner.stopping.wait(resp.sleep)
            self.send_response(resp.status)
            if resp.content_type:
                self.send_header("Content-Type", resp.content_type)
            for k, v in resp.headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            self.wfile.write(resp.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client hung up (a timeout, a truncated body)
            self.close_connection = True
        finally:
            entry.end = time.monotonic()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the request log is the record."""
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # do not wait for idle keep-alive connections on close
    owner: SiteServer

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (kill -9, a read timeout, a truncated body) is normal here, not worth a trace."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class SiteServer:
    """Serve `site` on 127.0.0.1:<free port> in a background thread; record every request."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self.stopping = threading.Event()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        site.base = self.base
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> SiteServer:
        """Start serving."""
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving: wake sleeping handlers, stop the loop, close the socket."""
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def _log(self, entry: Request) -> None:
        """Append to the request log (called from the handler threads)."""
        with self._lock:
            self._requests.append(entry)

    def url(self, path: str) -> str:
        """The absolute URL of `path` on this server."""
        return self.base + path

    @property
    def requests(self) -> list[Request]:
        """A snapshot of the request log, in arrival order."""
        with self._lock:
            return list(self._requests)

    def paths(self) -> list[str]:
        """The request targets (path and query, as sent), in arrival order."""
        return [r.path for r in self.requests]

    def count(self, path: str) -> int:
        """How many times `path` was requested."""
        return self.paths().count(path)

    def clear(self) -> None:
        """Forget the requests so far."""
        with self._lock:
            self._requests.clear()
