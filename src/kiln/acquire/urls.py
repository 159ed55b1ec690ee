"""URL normalisation and crawl scope: one spelling per page, so the visited set never fetches a page twice.

`HTTP://Example.COM:80/a/./b/../c?z=1&a=2#top` and `http://example.com/a/c?a=2&z=1` are the same page. The
rules (RFC 3986 section 6 plus the usual crawler conventions): lower-case scheme and host, drop the default
port, resolve `.` and `..` segments, "/" for an empty path, upper-case percent-escapes and decode the
unreserved ones (`%7E` -> `~`), drop the fragment, sort the query parameters. Only http(s) URLs are crawlable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_ESCAPE = re.compile(r"%[0-9a-fA-F]{2}")
_UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _normalize_escapes(part: str, safe: str) -> str:
    """Upper-case every %xx, decode the ones that stand for unreserved characters, escape stray bytes."""

    def fix(m: re.Match[str]) -> str:
        ch = chr(int(m.group(0)[1:], 16))
        return ch if ch in _UNRESERVED else m.group(0).upper()

    part = re.sub(r"%(?![0-9a-fA-F]{2})", "%25", part)  # a stray '%' is a literal percent sign
    part = _ESCAPE.sub(fix, part)
    # Escape characters that must not appear raw (spaces, non-ASCII), leaving existing escapes alone.
    return quote(part, safe=safe + "%")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4."""
    out: list[str] = []
    for seg in path.split("/"):
        if seg == "..":
            if len(out) > 1:
                out.pop()
        elif seg != ".":
            out.append(seg)
    result = "/".join(out)
    if path.endswith(("/.", "/..")):
        result += "/"
    return result if result.startswith("/") else "/" + result


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of `url` (resolved against `base`), or None if it is not a crawlable http(s) URL."""
    url = url.strip()
    if not url:
        return None
    if base:
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or an invalid IPv6 literal
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    try:
        host = parts.hostname.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    path = _remove_dot_segments(_normalize_escapes(parts.path or "/", safe="/:@!$&'()*+,;="))
    query = ""
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode(sorted(pairs), doseq=True, quote_via=quote, safe="/:@!$'()*,;")
    return urlunsplit((scheme, netloc, path, query, ""))


def host_of(url: str) -> str:
    """host[:port] of a normalised URL (the unit of politeness: one connection and one delay per host)."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def registered_domain(host: str) -> str:
    """The last two labels of a host name (example.co.uk would need the public suffix list; kiln's
    `domain` scope is for simple cases and says so)."""
    if host.startswith("["):  # an IPv6 literal, with or without a port: the address is the "domain"
        return host[1 : host.find("]")]
    name = host.rsplit(":", 1)[0]
    if name.replace(".", "").isdigit():
        return name
    labels = name.split(".")
    return ".".join(labels[-2:])


@dataclass
class Scope:
    """Which discovered URLs to follow: same host / same registered domain / anything, then allow and deny
    regexes (a URL must match some allow regex if any are given, and no deny regex)."""

    mode: str = "host"  # host | domain | any
    seeds: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in ("host", "domain", "any"):
            raise ValueError(f"scope must be host, domain or any, got {self.mode!r}")
        try:
            self._allow = [re.compile(p) for p in self.allow]
            self._deny = [re.compile(p) for p in self.deny]
        except re.error as e:
            raise ValueError(f"bad allow/deny regex: {e}") from None
        self._hosts = {host_of(s) for s in self.seeds}
        self._domains = {registered_domain(h) for h in self._hosts}

    def allows(self, url: str) -> bool:
        host = host_of(url)
        if self.mode == "host" and host not in self._hosts:
            return False
        if self.mode == "domain" and registered_domain(host) not in self._domains:
            return False
        if self._allow and not any(p.search(url) for p in self._allow):
            return False
        return not any(p.search(url) for p in self._deny)


def unquote_path(url: str) -> str:
    """The decoded path of a URL (for messages)."""
    return unquote(urlsplit(url).path)
