"""URLFilter: blocklisted domains (and their subdomains), listed URLs, banned and soft-banned URL words;
lists from the bundled default, plain files, gzipped files and EasyList (only its `||domain^` rules)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from kiln.clean.pipeline import Document, run_steps
from kiln.clean.url_filter import (
    URLFilter,
    default_lists,
    normalize_domain,
    read_domains,
    read_sectioned,
    url_key,
    url_tokens,
)


def reason(f: URLFilter, url: str) -> str | None:
    return f.decide(Document("d", url=url))


def test_default_list_is_shipped_in_the_package_and_blocks_its_domains_and_subdomains():
    lists = default_lists()
    assert "pornhub.com" in lists["domains"] and "porn" in lists["words"] and "sex" in lists["soft_words"]
    asset = Path(__import__("kiln").__file__).parent / "assets" / "blocklist_default.txt"
    assert asset.is_file() and asset.read_text().startswith("#")  # a comment header says what it is
    f = URLFilter()
    assert reason(f, "https://pornhub.com/") == "url_banned_domain"
    assert reason(f, "https://www.PornHub.com./view?x=1") == "url_banned_domain"  # case, trailing dot, subdomain
    assert reason(f, "http://de.xhamster.com:8080/a") == "url_banned_domain"
    # Only whole labels: a look-alike host or the name inside another domain is not the listed domain.
    assert reason(f, "https://notpornhub.com/") is None
    assert reason(f, "https://pornhub.com.example.org/") is None
    assert reason(URLFilter(use_default=False), "https://pornhub.com/") is None


def test_a_listed_subdomain_blocks_itself_and_below_but_not_its_parent_or_siblings():
    f = URLFilter(banned_domains=["ads.example.com", "*.tracker.net"], use_default=False)
    assert reason(f, "http://ads.example.com/x") == "url_banned_domain"
    assert reason(f, "http://eu.ads.example.com/x") == "url_banned_domain"
    assert reason(f, "http://example.com/ads") is None
    assert reason(f, "http://www.example.com/") is None
    assert reason(f, "http://tracker.net/") == "url_banned_domain"  # "*.d" means d and all below


def test_banned_urls_match_after_normalisation_whatever_the_scheme():
    f = URLFilter(banned_urls=["http://Example.com:80/a/./b?z=1&a=2#frag"], use_default=False)
    assert reason(f, "https://example.com/a/b?a=2&z=1") == "url_banned_url"
    assert reason(f, "http://EXAMPLE.com/a/b?z=1&a=2") == "url_banned_url"
    assert reason(f, "http://example.com/a/b") is None  # another page of the same site
    assert reason(f, "http://example.com/a/b?a=2&z=1&p=3") is None


def test_banned_words_are_whole_url_tokens():
    f = URLFilter(banned_words=["casino"], use_default=False)
    assert url_tokens("https://Best-Casino.example/Play_now?id=7") == {
        "https",
        "best",
        "casino",
        "example",
        "play",
        "now",
        "id",
        "7",
    }
    assert reason(f, "https://best-casino.example/") == "url_banned_word"
    assert reason(f, "https://example.org/games/CASINO/top") == "url_banned_word"
    assert reason(f, "https://example.org/casinoroyale-review") is None  # not a whole token
    d = URLFilter()  # the bundled words
    assert reason(d, "http://example.com/porn/videos") == "url_banned_word"
    assert reason(d, "http://example.com/pornography-research") is None


def test_soft_words_need_two_distinct_hits_and_the_threshold_is_configurable():
    f = URLFilter(soft_banned_words=["sex", "nude", "adult"], use_default=False)
    assert reason(f, "http://example.org/sex-education") is None
    assert reason(f, "http://example.org/sex/sex/sex") is None  # one word, three times: still one word
    assert reason(f, "http://example.org/adult/nude-pics") == "url_soft_banned_words"
    strict = URLFilter(soft_banned_words=["sex"], soft_word_threshold=1, use_default=False)
    assert reason(strict, "http://example.org/sex-education") == "url_soft_banned_words"
    with pytest.raises(ValueError):
        URLFilter(soft_word_threshold=0)


def test_banned_subwords_match_inside_concatenations_only_when_asked():
    url = "http://freeporntube.example/"
    assert reason(URLFilter(use_default=False), url) is None
    assert reason(URLFilter(banned_subwords=["porn"], use_default=False), url) == "url_banned_subword"
    assert reason(URLFilter(banned_subwords=["free-porn"], use_default=False), "http://x.org/FREE_PORN") is not None


def test_plain_and_gzipped_list_files_with_comments(tmp_path: Path):
    (tmp_path / "domains.txt").write_text("# my blocklist\n\nSpam.Example  # a trailing comment\n.bad.test\n")
    with gzip.open(tmp_path / "words.txt.gz", "wt") as g:
        g.write("# words\nGambling\n")
    (tmp_path / "urls.txt").write_text("https://ok.example/blocked-page\n")
    (tmp_path / "soft.txt").write_text("cheap\npills\n")
    f = URLFilter(
        domain_files=[tmp_path / "domains.txt"],
        word_files=[tmp_path / "words.txt.gz"],
        url_files=[tmp_path / "urls.txt"],
        soft_word_files=[tmp_path / "soft.txt"],
        use_default=False,
    )
    assert f.domains == {"spam.example", "bad.test"}
    assert f.words == {"gambling"}
    assert reason(f, "http://mail.spam.example/") == "url_banned_domain"
    assert reason(f, "http://bad.test/") == "url_banned_domain"
    assert reason(f, "http://ok.example/gambling/") == "url_banned_word"
    assert reason(f, "http://ok.example/blocked-page") == "url_banned_url"
    assert reason(f, "http://ok.example/cheap-pills") == "url_soft_banned_words"
    assert reason(f, "http://ok.example/other-page") is None


def test_easylist_files_give_only_their_plain_domain_rules(tmp_path: Path):
    rules = "\n".join(
        [
            "[Adblock Plus 2.0]",
            "! Title: test list",
            "||ads.example.com^",
            "||Tracker.Example.NET^",
            "||scripts.example.org^$script",  # an option: only some resources of the site
            "||cdn.example.*/banner/",  # a wildcard path rule
            "||example.info/ads/",  # a path on a site, not the site
            "@@||good.example^",  # an exception
            "example.edu##.ad-box",  # element hiding
            "/banner/ad.js",
        ]
    )
    path = tmp_path / "easylist.txt"
    path.write_text(rules)
    assert read_domains(path) == {"ads.example.com", "tracker.example.net"}
    f = URLFilter(domain_files=[path], use_default=False)
    assert reason(f, "https://ads.example.com/") == "url_banned_domain"
    assert reason(f, "https://scripts.example.org/") is None
    assert reason(f, "https://good.example/") is None


@pytest.mark.shared
def test_the_real_easylist_loads_its_domain_block_rules(shared_data: Path):
    path = shared_data / "web" / "blocklists" / "easylist.txt.gz"
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
    plain = {m.group(1) for line in lines if (m := re.fullmatch(r"\|\|([a-z0-9.-]+)\^", line.strip()))}
    with_options = {m.group(1) for line in lines if (m := re.fullmatch(r"\|\|([a-z0-9.-]+)\^\$.+", line.strip()))}
    domains = read_domains(path)
    assert len(domains) > 10_000
    assert domains == plain
    only_with_options = sorted(with_options - plain)
    assert only_with_options and not (set(only_with_options) & domains)
    f = URLFilter(domain_files=[path], use_default=False)
    some = sorted(plain)[len(plain) // 2]
    assert reason(f, f"https://{some}/page") == "url_banned_domain"
    assert reason(f, f"https://sub.{some}/page") == "url_banned_domain"
    assert reason(f, f"https://{only_with_options[0]}/") is None
    assert reason(f, "https://docs.python.org/3/library/json.html") is None


def test_in_a_pipeline_reasons_are_counted_and_urlless_or_malformed_urls_never_crash():
    f = URLFilter(banned_words=["casino"])
    docs = [
        Document("1", url="https://example.org/article"),
        Document("2", url="https://www.pornhub.com/x"),
        Document("3", url="http://casino.example/"),
        Document("4", url=""),  # no URL: nothing to judge, kept
        Document("5", url="http://[::1"),  # a broken IPv6 literal
        Document("6", url="http://exa mple.com:99999/x"),  # a space and a bad port
        Document("7", url="http://" + "a" * 70 + ".com/"),  # a label too long for IDNA
        Document("8", url="example.net/no-scheme/casino"),
    ]
    kept = [d.id for d in run_steps(docs, [f])]
    assert kept == ["1", "4", "5", "6", "7"]
    assert f.stats.to_dict()["dropped_by_reason"] == {"url_banned_word": 2, "url_banned_domain": 1}
    assert docs[1].metadata["dropped_by"] == "url_filter:url_banned_domain"


def test_helpers_normalise_entries():
    assert normalize_domain("*.Bücher.Example.") == "xn--bcher-kva.example"
    assert normalize_domain("https://Host.Example/path") == "host.example"
    assert normalize_domain("not a domain") is None
    assert url_key("HTTPS://Example.com/%7Euser/") == "example.com/~user/"
    with pytest.raises(ValueError, match="before any"):
        read_sectioned(["orphan.example"])
    with pytest.raises(ValueError, match="unknown blocklist section"):
        read_sectioned(["[hosts]", "x.example"])
