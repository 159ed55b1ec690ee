"""HTTP payloads as archived in WARC: undoing chunked transfer encoding and gzip/deflate/br content encoding.

A WARC response record holds the bytes that crossed the wire; readers want the page. As warcio's
`content_stream()` does, the body is decoded, and the headers that described the wire form are renamed the way
Common Crawl does it (`X-Crawler-Content-Encoding`, ...) with a Content-Length that matches, so a record written
back out is self-consistent.
"""

from __future__ import annotations

import zlib

try:  # warcio decodes br when brotli is installed; do the same
    import brotli  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - brotli is optional
    brotli = None


class MalformedRecord(Exception):
    """A record that cannot be used (torn, unparseable HTTP, corrupt compression): count it, go on."""


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def decode_payload(raw: bytes, headers: list[tuple[str, str]]) -> tuple[bytes, list[tuple[str, str]]]:
    """Undo chunked transfer encoding and gzip/deflate/br content encoding, as warcio's content_stream does.

    Encodings actually undone (and a Content-Encoding that turns out to be a lie: the body is plain) are
    renamed `X-Crawler-...` and Content-Length is set to the body's, Common Crawl's convention, so the
    headers describe the body. A gzip body that starts like gzip but does not decode is _Malformed.
    """
    body = raw
    undone: set[str] = set()
    te = (header(headers, "transfer-encoding") or "").lower()
    if "chunked" in te:
        dechunked = _dechunk(body)
        if dechunked is not None:
            body = dechunked
            undone.add("transfer-encoding")
    ce = [e.strip().lower() for e in (header(headers, "content-encoding") or "").split(",") if e.strip()]
    ce = [e for e in ce if e != "identity"]
    if len(ce) == 1 and ce[0] in ("gzip", "x-gzip", "deflate", "br") and (ce[0] != "br" or brotli is not None):
        decoded = _decompress(body, ce[0])
        if decoded is not None:
            body = decoded
            undone.add("content-encoding")
        elif ce[0] in ("gzip", "x-gzip") and body.startswith(b"\x1f\x8b"):
            raise MalformedRecord("gzip Content-Encoding does not decode")
        else:  # declared but not applied (e.g. clueweb09): the body is already the page
            undone.add("content-encoding")
    if not undone:
        return body, headers
    out = []
    for k, v in headers:
        low = k.lower()
        if low in undone or low == "content-length":
            out.append((f"X-Crawler-{k}", v))
        else:
            out.append((k, v))
    out.append(("Content-Length", str(len(body))))
    return body, out


def _dechunk(data: bytes) -> bytes | None:
    """The payload of a chunked body; None if it does not start like one (then it was never chunked).
    A torn chunk keeps what arrived: truncated pages are still pages."""
    parts: list[bytes] = []
    pos, n = 0, len(data)
    while pos < n:
        eol = data.find(b"\n", pos)
        if eol < 0:
            break
        size_text = data[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            if not parts:
                return None
            parts.append(data[pos:])  # not a chunk header after all: keep the rest as warcio does
            break
        if size == 0:
            break
        start = eol + 1
        parts.append(data[start : start + size])
        pos = start + size
        if data.startswith(b"\r\n", pos):
            pos += 2
        elif data.startswith(b"\n", pos):
            pos += 1
    if not parts and not data[:pos].strip().startswith(b"0"):
        return None
    return b"".join(parts)


def _decompress(data: bytes, encoding: str) -> bytes | None:
    """Decoded bytes (a truncated stream gives what it holds), or None if `data` is not in `encoding`."""
    if encoding == "br":
        try:
            return brotli.decompress(data)
        except Exception:  # brotli.error differs between the brotli packages
            return None
    wbits_options = (47,) if encoding in ("gzip", "x-gzip") else (15, -15)  # deflate: zlib-wrapped or raw
    for wbits in wbits_options:
        out: list[bytes] = []
        rest = data
        try:
            while rest:
                d = zlib.decompressobj(wbits=wbits)
                out.append(d.decompress(rest))
                out.append(d.flush())
                if not d.eof:
                    break
                rest = d.unused_data.lstrip(b"\x00")
                if not rest.startswith(b"\x1f\x8b"):
                    break
        except zlib.error:
            if out:
                return b"".join(out)
            continue
        return b"".join(out)
    return None
