"""URL filter: drop pages from blocklisted domains, listed URLs, or with banned words in their URL.

This is datatrove's URLFilter (the first filter of FineWeb) without its downloaded UT1 lists and without
`tldextract`, in the order it checks, each with its own drop reason so `kiln clean` can say what hit:

1. `url_banned_domain`: the host or one of its parent domains is listed. A listed domain therefore blocks
   all its subdomains, and a listed subdomain (`ads.example.com`) blocks only itself and what is below it,
   which covers datatrove's "domain" and "subdomain" checks with one suffix walk and no public-suffix list.
2. `url_banned_url`: the page itself is listed. Both sides are normalised (`kiln.acquire.urls.normalize_url`)
   and compared without the scheme, so a list entry matches http and https, `:80`, `%7E` and `~` alike.
3. `url_banned_word`: a banned word is a whole token of the URL (lower-cased, split on non-alphanumerics):
   `porn` hits `/porn/videos` but not `/pornography-research`; whole tokens keep false positives rare.
4. `url_soft_banned_words`: at least `soft_word_threshold` (2) distinct "soft" words are tokens of the URL.
   Words like `sex` or `adult` are too ambiguous alone (`/sex-education`), two of them rarely are.
5. `url_banned_subword`: a sub-word occurs anywhere in the lower-cased URL with separators removed, for
   words that hide inside concatenations (`freeporntube`). Empty by default: substrings over-match.

Lists come from three places, merged: the small default list bundled in `kiln/assets/blocklist_default.txt`
(`use_default=True`; a placeholder, see its header), files given by the user (plain text, one entry per
line, `#` comments; gzipped if they end in `.gz`), and Python iterables. Domain files in EasyList/Adblock
format (recognised by their `[Adblock` header or `||` rules) contribute only their plain domain-block rules
`||example.com^`: every other rule (paths, options like `$script`, wildcards, exceptions, element hiding)
describes an ad resource, not a site whose pages are unwanted.

A document without a URL is kept: there is nothing to judge, and text input (WET, JSONL) may lack one.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from kiln.acquire.urls import normalize_url
from kiln.clean.pipeline import Document, Step

DEFAULT_LIST = "blocklist_default.txt"
SECTIONS = ("domains", "urls", "words", "soft_words", "subwords")

_TOKEN_SPLIT = re.compile(r"[^a-z0-9]+")
_EASYLIST_DOMAIN = re.compile(r"^\|\|([a-z0-9][a-z0-9.-]*[a-z0-9])\^$")
_SECTION = re.compile(r"^\[([a-z_]+)\]$")


def _read_lines(path: str | Path) -> list[str]:
    """Lines of a text file, gunzipped when it ends in .gz; undecodable bytes are replaced, never fatal."""
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace").splitlines()


def _entries(lines: Iterable[str]) -> list[str]:
    """Non-empty lines with `#` comments removed."""
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def normalize_domain(entry: str) -> str | None:
    """`*.Example.COM.` -> `example.com` (IDNA-encoded); None if it is not a host name."""
    entry = entry.strip().lower().rstrip(".")
    if entry.startswith("*."):
        entry = entry[2:]
    entry = entry.lstrip(".")
    if "://" in entry:  # a URL given where a domain was expected: take its host
        entry = urlsplit(entry).hostname or ""
    if not entry or any(c in entry for c in "/ *^$|"):
        return None
    try:
        return entry.encode("idna").decode("ascii")
    except UnicodeError:
        return None


def read_domains(path: str | Path) -> set[str]:
    """Domains of a plain list (one per line) or of an EasyList-style file (only its `||domain^` rules)."""
    lines = _read_lines(path)
    head = next((line.strip() for line in lines if line.strip()), "")
    easylist = head.startswith("[Adblock") or any(line.startswith("||") for line in lines[:1000])
    domains: set[str] = set()
    if easylist:
        for line in lines:
            m = _EASYLIST_DOMAIN.match(line.strip().lower())
            if m and (d := normalize_domain(m.group(1))):
                domains.add(d)
        return domains
    for entry in _entries(lines):
        if d := normalize_domain(entry):
            domains.add(d)
    return domains


def read_words(path: str | Path) -> set[str]:
    """Lower-cased words, one per line."""
    return {w.lower() for w in _entries(_read_lines(path))}


def read_urls(path: str | Path) -> set[str]:
    """URLs, one per line, in the form `URLFilter` compares (see `url_key`); unusable lines are skipped."""
    return {k for u in _entries(_read_lines(path)) if (k := url_key(u))}


def read_sectioned(lines: Iterable[str]) -> dict[str, set[str]]:
    """A `[section]`-headed list (the bundled default's format) as {section: entries}, normalised."""
    out: dict[str, set[str]] = {s: set() for s in SECTIONS}
    section: str | None = None
    for entry in _entries(lines):
        m = _SECTION.match(entry.lower())
        if m:
            section = m.group(1)
            if section not in out:
                raise ValueError(f"unknown blocklist section [{section}]; use one of {', '.join(SECTIONS)}")
            continue
        if section is None:
            raise ValueError(f"blocklist entry {entry!r} before any [section] header")
        if section == "domains":
            value = normalize_domain(entry)
        elif section == "urls":
            value = url_key(entry)
        else:
            value = entry.lower()
        if value:
            out[section].add(value)
    return out


def default_lists() -> dict[str, set[str]]:
    """The bundled starter list (package data `kiln/assets/blocklist_default.txt`)."""
    text = resources.files("kiln").joinpath("assets", DEFAULT_LIST).read_text(encoding="utf-8")
    return read_sectioned(text.splitlines())


def url_key(url: str) -> str | None:
    """The normalised URL without its scheme: one spelling for all the ways to write one page."""
    norm = normalize_url(url if "://" in url else f"http://{url}")
    if norm is None:
        return None
    return norm.split("://", 1)[1]


def url_tokens(url: str) -> set[str]:
    """The URL's words: lower-cased, split on every non-alphanumeric character (datatrove's rule)."""
    return {t for t in _TOKEN_SPLIT.split(url.lower()) if t}


class URLFilter(Step):
    """Drop documents by URL: banned domains, banned URLs, banned words (see the module docstring)."""

    name = "url_filter"

    def __init__(
        self,
        banned_domains: Iterable[str] = (),
        banned_urls: Iterable[str] = (),
        banned_words: Iterable[str] = (),
        soft_banned_words: Iterable[str] = (),
        banned_subwords: Iterable[str] = (),
        *,
        domain_files: Iterable[str | Path] = (),
        url_files: Iterable[str | Path] = (),
        word_files: Iterable[str | Path] = (),
        soft_word_files: Iterable[str | Path] = (),
        use_default: bool = True,
        soft_word_threshold: int = 2,
    ) -> None:
        super().__init__()
        if soft_word_threshold < 1:
            raise ValueError("soft_word_threshold must be at least 1")
        lists = default_lists() if use_default else {s: set() for s in SECTIONS}
        self.domains: set[str] = lists["domains"] | {d for x in banned_domains if (d := normalize_domain(x))}
        self.urls: set[str] = lists["urls"] | {k for u in banned_urls if (k := url_key(u))}
        self.words: set[str] = lists["words"] | {w.lower() for w in banned_words}
        self.soft_words: set[str] = lists["soft_words"] | {w.lower() for w in soft_banned_words}
        subwords = lists["subwords"] | {w.lower() for w in banned_subwords}
        for path in domain_files:
            self.domains |= read_domains(path)
        for path in url_files:
            self.urls |= read_urls(path)
        for path in word_files:
            self.words |= read_words(path)
        for path in soft_word_files:
            self.soft_words |= read_words(path)
        self.soft_word_threshold = soft_word_threshold
        # One alternation regex: re's matcher is fast enough for the few sub-words such lists hold.
        subs = sorted({_TOKEN_SPLIT.sub("", w) for w in subwords} - {""}, key=len, reverse=True)
        self._subwords = re.compile("|".join(map(re.escape, subs))) if subs else None

    def banned_domain(self, host: str) -> str | None:
        """The listed domain that `host` is (or is under), else None."""
        host = host.lower().rstrip(".")
        while host:
            if host in self.domains:
                return host
            _, _, host = host.partition(".")
        return None

    def decide(self, doc: Document) -> str | None:
        url = doc.url.strip()
        if not url:
            return None
        try:
            host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
            host = host.encode("idna").decode("ascii")
        except (ValueError, UnicodeError):  # a bad port, a broken IPv6 literal, an unencodable label
            host = ""
        if host and self.banned_domain(host):
            return "url_banned_domain"
        if self.urls and url_key(url) in self.urls:
            return "url_banned_url"
        tokens = url_tokens(url)
        if not tokens.isdisjoint(self.words):
            return "url_banned_word"
        if len(tokens & self.soft_words) >= self.soft_word_threshold:
            return "url_soft_banned_words"
        if self._subwords is not None and self._subwords.search(_TOKEN_SPLIT.sub("", url.lower())):
            return "url_banned_subword"
        return None


__all__ = [
    "URLFilter",
    "default_lists",
    "normalize_domain",
    "read_domains",
    "read_sectioned",
    "read_urls",
    "read_words",
    "url_key",
    "url_tokens",
]
