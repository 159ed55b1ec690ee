"""URL normalisation and crawl scope (kiln.acquire.urls): one spelling per page, so the crawler's visited set never
fetches a page twice, and the scope rules that decide which discovered links are followed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiln.acquire.urls import Scope, host_of, normalize_url, registered_domain

# ------------------------------------------------------------------------------------------------ normalize_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # Scheme and host are case-insensitive; the path is not.
        ("HTTP://Example.COM/Path", "http://example.com/Path"),
        ("hTTpS://WWW.Example.org/A/b", "https://www.example.org/A/b"),
        # Default ports go, others stay; an empty port is no port.
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("http://example.com:/a", "http://example.com/a"),
        # An empty path is "/".
        ("http://example.com", "http://example.com/"),
        ("http://example.com?x=1", "http://example.com/?x=1"),
        # Fragments are dropped.
        ("http://example.com/a#top", "http://example.com/a"),
        ("http://example.com/a?b=1#x=2", "http://example.com/a?b=1"),
        ("http://example.com/#", "http://example.com/"),
        # Query parameters sorted (by name, then value); blank values kept and spelled "name="; an empty query goes.
        ("http://example.com/q?y=2&x=1", "http://example.com/q?x=1&y=2"),
        ("http://example.com/q?b=2&a=1&a=0", "http://example.com/q?a=0&a=1&b=2"),
        ("http://example.com/q?flag", "http://example.com/q?flag="),
        ("http://example.com/q?flag=&a=1", "http://example.com/q?a=1&flag="),
        ("http://example.com/a?", "http://example.com/a"),
        ("http://example.com/q?a+b=c%20d", "http://example.com/q?a%20b=c%20d"),
        ("http://example.com/q?a=%26&b=%3d", "http://example.com/q?a=%26&b=%3D"),
        ("http://example.com/q?a=%7e", "http://example.com/q?a=~"),
        # Dot segments resolved, never above the root; a trailing "." or ".." keeps the slash.
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/b/../a", "http://example.com/a"),
        ("http://example.com/./a", "http://example.com/a"),
        ("http://example.com/a/../../../b", "http://example.com/b"),
        ("http://example.com/a/b/..", "http://example.com/a/"),
        ("http://example.com/a/.", "http://example.com/a/"),
        ("http://example.com/..", "http://example.com/"),
        # Percent-escapes: upper-cased; unreserved characters decoded; reserved ones and others kept escaped.
        ("http://example.com/%7Euser", "http://example.com/~user"),
        ("http://example.com/%7euser", "http://example.com/~user"),
        ("http://example.com/%41%62%2D%5f%2e", "http://example.com/Ab-_."),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/a%3bb%3F", "http://example.com/a%3Bb%3F"),
        ("http://example.com/%e2%82%ac", "http://example.com/%E2%82%AC"),
        # Characters that must not appear raw are escaped (UTF-8); reserved sub-delimiters in a path stay.
        ("http://example.com/caf\u00e9", "http://example.com/caf%C3%A9"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/a;p=1,2", "http://example.com/a;p=1,2"),
        # IDN host -> punycode; IPv6 literal kept in brackets (default port dropped).
        ("http://B\u00fccher.Example/x", "http://xn--bcher-kva.example/x"),
        ("http://\u4f8b\u3048.jp/", "http://xn--r8jz45g.jp/"),
        ("http://[::1]:80/a", "http://[::1]/a"),
        ("http://[::1]:8080/a", "http://[::1]:8080/a"),
        # Surrounding whitespace is ignored.
        ("  http://example.com/a \n", "http://example.com/a"),
        # User info stays (host still lower-cased).
        ("http://user:pw@Example.COM/x", "http://user:pw@example.com/x"),
    ],
)
def test_normalize_url_canonical_form(url: str, expected: str) -> None:
    """Each spelling maps to the documented canonical form (RFC 3986 section 6 plus crawler conventions)."""
    assert normalize_url(url) == expected
    assert normalize_url(expected) == expected  # the canonical form is a fixed point


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "mailto:someone@example.com",
        "javascript:alert(1)",
        "javascript:void(0)",
        "ftp://example.com/file",
        "data:text/html,<p>hi</p>",
        "file:///etc/passwd",
        "tel:+123456",
        "http:///no-host",
        "http://example.com:99999/",  # port out of range
        "http://example.com:abc/",  # not a number
        "http://[::1/",  # broken IPv6 literal
        "example.com/no-scheme",
        "//example.com/scheme-relative-without-a-base",
    ],
)
def test_normalize_url_rejects_what_is_not_a_crawlable_http_url(url: str) -> None:
    """Non-http(s) schemes, no host, bad ports and empty strings give None (the crawler skips the link)."""
    assert normalize_url(url) is None


@pytest.mark.parametrize(
    ("href", "base", "expected"),
    [
        ("../x", "http://h.org/a/b/c", "http://h.org/a/x"),
        ("x", "http://h.org/a/", "http://h.org/a/x"),
        ("x", "http://h.org/a", "http://h.org/x"),
        ("/abs", "http://h.org/a/b", "http://h.org/abs"),
        ("?q=2&a=1", "http://h.org/a/b?z=0", "http://h.org/a/b?a=1&q=2"),
        ("#frag", "http://h.org/a?b=1", "http://h.org/a?b=1"),
        ("//other.org/p", "https://h.org/", "https://other.org/p"),
        ("HTTP://Other.ORG:80/p", "https://h.org/", "http://other.org/p"),
        ("./", "http://h.org/a/b", "http://h.org/a/"),
        ("%7Eme/./x/../y", "http://h.org/dir/", "http://h.org/dir/~me/y"),
        ("mailto:x@h.org", "http://h.org/", None),
        ("javascript:go()", "http://h.org/", None),
        ("", "http://h.org/a", None),
    ],
)
def test_normalize_url_resolves_relative_links_against_a_base(href: str, base: str, expected: str | None) -> None:
    """An href on a page resolves against the page URL before normalisation."""
    assert normalize_url(href, base) == expected


def test_duplicate_spellings_of_one_page_collapse() -> None:
    """All the ways the trap site spells /a (and /q, /~user) normalise to the same string."""
    base = "http://127.0.0.1:8000/"
    spellings = ["/a", "/a#frag", "/./a", "/b/../a", "HTTP://127.0.0.1:8000/a", "http://127.0.0.1:8000/a?", "a#x"]
    assert {normalize_url(s, base) for s in spellings} == {"http://127.0.0.1:8000/a"}
    assert normalize_url("/q?x=1&y=2", base) == normalize_url("/q?y=2&x=1", base)
    assert normalize_url("/%7Euser", base) == normalize_url("/~user", base) == "http://127.0.0.1:8000/~user"
    # ... while different pages stay different: paths are case-sensitive, and localhost is not 127.0.0.1.
    assert normalize_url("/A", base) != normalize_url("/a", base)
    assert normalize_url("http://localhost:8000/a") != normalize_url("/a", base)


def test_normalize_url_is_idempotent_with_a_stray_percent_sign() -> None:
    """A '%' not followed by two hex digits must not combine with what a decoded escape leaves after it."""
    once = normalize_url("http://h.org/%4%31")
    assert normalize_url(once) == once  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ property

_LABEL = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=12)
_HOST = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    st.sampled_from(["B\u00fccher.example", "\u4f8b\u3048.jp", "127.0.0.1", "[::1]", "[2001:DB8::1]"]),
)
_PORT = st.one_of(st.just(""), st.sampled_from([":80", ":443", ":8080", ":"]), st.integers(1, 65535).map(":{}".format))
# Path pieces: plain and reserved characters, dot segments, non-ASCII, and well-formed escapes of any byte.
_PATH_TOKEN = st.one_of(
    st.text("abcXYZ019-._~!$&'()*+,;=:@ ", min_size=1, max_size=4),
    st.sampled_from(["/", "/", ".", "..", "./", "../", "\u00e9", "\u20ac", "//"]),
    st.integers(0, 255).map(lambda b: f"%{b:02x}"),
    st.integers(0, 255).map(lambda b: f"%{b:02X}"),
)
_QUERY_TEXT = st.text("abcXYZ019-._~!$'()*+,;:@/?% \u00e9", max_size=6)
_QUERY = st.one_of(
    st.just(""),
    st.just("?"),
    st.lists(st.tuples(_QUERY_TEXT, st.sampled_from(["=", ""]), _QUERY_TEXT), max_size=4).map(
        lambda pairs: "?" + "&".join(k + eq + v for k, eq, v in pairs)
    ),
)
_FRAGMENT = st.one_of(st.just(""), st.text("abc#/?", max_size=5).map("#{}".format))


@st.composite
def http_urls(draw: st.DrawFn) -> str:
    """http(s) URLs with mixed-case schemes and hosts, IDN and IP hosts, ports, dot segments, escapes of any
    byte, raw reserved and non-ASCII characters, queries with blank values and fragments."""
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "Https"]))
    path = "/" + "".join(draw(st.lists(_PATH_TOKEN, max_size=8)))
    return f"{scheme}://{draw(_HOST)}{draw(_PORT)}{path}{draw(_QUERY)}{draw(_FRAGMENT)}"


@settings(max_examples=400, deadline=None)
@given(http_urls())
def test_normalize_url_is_idempotent(url: str) -> None:
    """normalize(normalize(u)) == normalize(u): the canonical form is a fixed point, so a URL read back from the
    crawl state or a WARC file and normalised again is still the same key."""
    once = normalize_url(url)
    assert once is not None, url
    assert normalize_url(once) == once
    assert once == once.strip() and "#" not in once
    assert once.split("://", 1)[0] in ("http", "https")


@settings(max_examples=200, deadline=None)
@given(http_urls(), st.sampled_from(["x", "../y", "?q=1", "#f", "/abs/./p", "//other.example/z"]))
def test_resolving_against_a_normalized_base_is_idempotent_too(base: str, href: str) -> None:
    """A link resolved against any page URL is itself canonical."""
    url = normalize_url(href, normalize_url(base))
    assert url is not None
    assert normalize_url(url) == url


# ------------------------------------------------------------------------------------------------ scope


def test_host_of_and_registered_domain() -> None:
    """The politeness unit is host[:port]; the domain scope uses the last two labels (IPs stay whole)."""
    assert host_of("http://user:pw@example.com:8080/a") == "example.com:8080"
    assert host_of("http://example.com/a") == "example.com"
    assert registered_domain("www.docs.example.com:8080") == "example.com"
    assert registered_domain("example.com") == "example.com"
    assert registered_domain("127.0.0.1:8000") == "127.0.0.1"
    assert registered_domain("localhost:8000") == "localhost"


def test_registered_domain_of_ipv6_literals() -> None:
    """An IPv6 literal is its own domain, like an IPv4 address; the domain scope must not cross to another one."""
    assert registered_domain("[::1]:8000") == "::1"
    assert registered_domain("[2001:db8::1]") == "2001:db8::1"
    assert not Scope("domain", ["http://[2001:db8::1]/"]).allows("http://[2001:4860::8888]/")


def test_scope_host_follows_only_the_seed_hosts() -> None:
    """host: same host and port as some seed (localhost is not 127.0.0.1, another port is another host)."""
    scope = Scope("host", ["http://www.example.com/", "http://127.0.0.1:8000/"])
    assert scope.allows("http://www.example.com/any/page?x=1")
    assert scope.allows("http://127.0.0.1:8000/a")
    assert not scope.allows("http://docs.example.com/")
    assert not scope.allows("http://example.com/")
    assert not scope.allows("http://www.example.com:8080/")
    assert not scope.allows("http://localhost:8000/a")
    assert not scope.allows("http://127.0.0.1:8001/a")


def test_scope_domain_follows_sibling_hosts() -> None:
    """domain: any host under a seed's registered domain, nothing else."""
    scope = Scope("domain", ["http://www.example.com/"])
    assert scope.allows("http://docs.example.com/x")
    assert scope.allows("http://example.com/")
    assert scope.allows("https://a.b.example.com:8443/")
    assert not scope.allows("http://example.org/")
    assert not scope.allows("http://notexample.com/")
    assert not scope.allows("http://example.com.evil.org/")


def test_scope_any_follows_everything_not_denied() -> None:
    """any: every host, still subject to the allow and deny regexes."""
    scope = Scope("any", ["http://www.example.com/"], deny=[r"\.pdf$"])
    assert scope.allows("http://example.org/")
    assert scope.allows("http://localhost:9/x")
    assert not scope.allows("http://example.org/paper.pdf")


def test_scope_allow_and_deny_regexes() -> None:
    """A URL must match some allow regex (when there are any) and no deny regex; regexes search the whole URL."""
    scope = Scope("host", ["http://h.org/"], allow=[r"/docs/", r"/blog/\d+$"], deny=[r"/docs/old/", r"\?print"])
    assert scope.allows("http://h.org/docs/intro")
    assert scope.allows("http://h.org/blog/42")
    assert not scope.allows("http://h.org/blog/42/comments")
    assert not scope.allows("http://h.org/about")
    assert not scope.allows("http://h.org/docs/old/intro")
    assert not scope.allows("http://h.org/docs/intro?print=1")
    assert not scope.allows("http://other.org/docs/intro")  # the mode still applies
    deny_only = Scope("host", ["http://h.org/"], deny=["secret"])
    assert deny_only.allows("http://h.org/public")
    assert not deny_only.allows("http://h.org/top-secret/x")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allow": ["("]}, "bad allow/deny regex"),
        ({"deny": ["[a-"]}, "bad allow/deny regex"),
        ({"mode": "site"}, "scope must be host, domain or any"),
    ],
)
def test_scope_rejects_bad_regexes_and_modes(kwargs: dict, message: str) -> None:
    """A bad regex or mode is a ValueError naming the problem (the CLI turns it into exit code 2)."""
    args = {"mode": "host", "seeds": ["http://h.org/"], **kwargs}
    with pytest.raises(ValueError, match=message):
        Scope(**args)
