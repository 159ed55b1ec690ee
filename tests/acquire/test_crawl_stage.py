"""`kiln crawl` as a stage: `run(CrawlConfig) -> CrawlSummary`, the resolved config it leaves (and continues
from), the summary's lines against what the command prints, and config checks that name the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from crawl_site import SiteServer, TrapSite, TreeSite
from crawl_support import config

from helpers import run_cli
from kiln.acquire import CrawlConfig, CrawlSummary, run_crawl
from kiln.config import load_config, to_dict


def test_the_summary_renders_what_the_command_prints(tmp_path: Path) -> None:
    """CrawlSummary.render(), built from summary.json, is line for line what `kiln crawl` printed (with the
    skipped and failed lines of the trap site)."""
    out = tmp_path / "crawl"
    with SiteServer(TrapSite()) as server:
        argv = ["crawl", server.url("/"), "--out", str(out), "--delay", "0", "--quiet", "--timeout", "1"]
        rc, stdout, stderr = run_cli([*argv, "--deny", "/slow", "--deny", "flaky", "--deny", "always500"])
    assert rc == 0, stderr
    summary = CrawlSummary(**json.loads((out / "summary.json").read_text(encoding="utf-8")))
    assert summary.failed and summary.skipped
    assert summary.render() + "\n" == stdout
    assert len(stdout.splitlines()) == 3


def test_the_resolved_config_continues_the_crawl(tmp_path: Path) -> None:
    """A run leaves kiln-crawl.toml, which loads back to the config it ran with; run from it (with the page limit
    lifted) the crawl continues where it stopped."""
    site = TreeSite(12)
    out = tmp_path / "crawl"
    with SiteServer(site) as server:
        cfg = config(server, out, seed="/p/0", max_pages=5)
        first = run_crawl(cfg)
        ran = load_config(CrawlConfig, out / "kiln-crawl.toml", ["max_pages=0"])
        assert to_dict(ran) == {**to_dict(cfg), "max_pages": 0}
        second = run_crawl(ran)
    assert isinstance(first, CrawlSummary) and (first.pages, first.queued > 0) == (5, True)
    assert (second.pages, second.pages_this_run, second.queued) == (12, 7, 0)
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == second.to_json()


def test_seeds_file_and_the_timeouts(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("# comment\n\n  http://b.org/  \n", encoding="utf-8")
    cfg = CrawlConfig(seeds=["http://a.org/"], seeds_file=str(seeds))
    assert cfg.validate().all_seeds() == ["http://a.org/", "http://b.org/"]
    assert CrawlConfig(seeds_file=str(seeds)).validate().all_seeds() == ["http://b.org/"]
    assert (CrawlConfig().timeout, CrawlConfig().connect_timeout) == (20.0, 10.0)
    assert CrawlConfig(timeout=0.3).connect_timeout == 0.3
    with pytest.raises(FileNotFoundError, match="seeds file not found"):
        CrawlConfig(seeds_file=str(tmp_path / "missing.txt")).validate()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seeds", []),
        ("scope", "planet"),
        ("max_depth", -1),
        ("max_pages", -1),
        ("max_page_mb", 0.0),
        ("concurrency", 0),
        ("per_host", 0),
        ("delay", -1.0),
        ("timeout", 0.0),
        ("retries", -1),
        ("backoff", -0.5),
        ("max_redirects", -1),
        ("user_agent", " "),
        ("warc_mb", 0.0),
    ],
)
def test_bad_settings_name_the_field_and_create_nothing(field: str, value: object, tmp_path: Path) -> None:
    cfg = CrawlConfig(seeds=["http://h.org/"], out_dir=str(tmp_path / "out"))
    setattr(cfg, field, value)
    with pytest.raises(ValueError, match=field):
        run_crawl(cfg)
    assert not (tmp_path / "out").exists()
