"""`CrawlConfig`: everything one `kiln crawl` run needs, as one typed object (a TOML file can hold it, and every
field is a command-line option of the same name: `max_depth` is `--max-depth`).

A run writes it back as `<out_dir>/kiln-crawl.toml` before fetching anything, so `kiln crawl
<out_dir>/kiln-crawl.toml` continues an interrupted crawl with exactly the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kiln import __version__
from kiln.utils.checks import require

DEFAULT_USER_AGENT = f"kiln/{__version__} (educational LLM data crawler; obeys robots.txt)"
# Connecting is quick or hopeless: a host that has not answered the handshake in 10 s is not going to.
MAX_CONNECT_TIMEOUT = 10.0
SCOPES = ("host", "domain", "any")


@dataclass
class CrawlConfig:
    """A `kiln crawl` run: where to start, which links to follow, how politely, and where the WARC files go."""

    seeds: list[str] = field(default_factory=list)
    """Seed URLs (http or https) the crawl starts from; more can come from seeds_file."""
    seeds_file: str | None = None
    """A file with one seed URL per line (blank lines and lines starting with # are ignored), added to seeds."""
    out_dir: str = "crawl"
    """Output directory: crawl-NNNNN.warc.gz, crawl.sqlite (the resumable state), summary.json and the resolved
    config; the same command again continues the crawl in it."""
    scope: Literal["host", "domain", "any"] = "host"
    """Which links to follow: to a seed's host, to a seed's registered domain (example.co.uk), or anywhere."""
    allow: list[str] = field(default_factory=list)
    """Regexes: if any are given, follow only URLs matching one of them."""
    deny: list[str] = field(default_factory=list)
    """Regexes: never follow a URL matching one of them."""
    max_depth: int = 10
    """Link hops from a seed; pages deeper than this are not queued."""
    max_pages: int = 0
    """Stop after this many pages are written (0 = no limit)."""
    max_page_mb: float = 5.0
    """Bodies beyond this size (MiB) are truncated and marked `WARC-Truncated: length`."""
    concurrency: int = 16
    """Fetches in flight over all hosts together (at most 1024: each holds a socket and a body buffer)."""
    per_host: int = 1
    """Connections to one host at a time."""
    delay: float = 1.0
    """Seconds between requests to one host (a robots.txt Crawl-delay can raise it)."""
    timeout: float = 20.0
    """Read timeout in seconds; connecting gets min(timeout, 10) s."""
    retries: int = 2
    """Extra attempts after a 5xx, a 429, a timeout or a network error."""
    backoff: float = 1.0
    """Seconds before the first retry; doubles with each further one."""
    max_redirects: int = 5
    """Redirect hops followed from one URL before giving up on it."""
    user_agent: str = DEFAULT_USER_AGENT
    """The User-Agent header (and the name robots.txt rules are matched against: the part before '/')."""
    warc_mb: float = 100.0
    """Start a new WARC file when the current one reaches this size (MiB)."""
    quiet: bool = False
    """No progress bar (the summary lines are still printed)."""

    @property
    def connect_timeout(self) -> float:
        """Seconds to connect: the read timeout, but never more than MAX_CONNECT_TIMEOUT."""
        return min(self.timeout, MAX_CONNECT_TIMEOUT)

    def all_seeds(self) -> list[str]:
        """`seeds`, then the URLs in `seeds_file` (read now: the file may change between runs of a crawl)."""
        seeds = list(self.seeds)
        if self.seeds_file:
            try:
                lines = Path(self.seeds_file).read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                raise FileNotFoundError(f"seeds file not found: {self.seeds_file}") from None
            seeds += [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
        return seeds

    def validate(self) -> CrawlConfig:
        require(bool(self.all_seeds()), "seeds: give at least one seed URL (as arguments or in seeds_file)")
        require(bool(self.out_dir), "out_dir must be a directory name")
        require(self.scope in SCOPES, f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")
        require(self.max_depth >= 0, f"max_depth must be >= 0, got {self.max_depth}")
        require(self.max_pages >= 0, f"max_pages must be >= 0 (0 = no limit), got {self.max_pages}")
        require(self.max_page_mb > 0, f"max_page_mb must be > 0, got {self.max_page_mb}")
        # Each fetch in flight holds a socket (a file descriptor; the usual limit is 1024 per process) and a body
        # buffer of up to max_page_mb: beyond 1024 a crawl fails midway or exhausts memory instead of going faster.
        require(1 <= self.concurrency <= 1024, f"concurrency must be between 1 and 1024, got {self.concurrency}")
        require(self.per_host >= 1, f"per_host must be >= 1, got {self.per_host}")
        require(self.delay >= 0, f"delay must be >= 0, got {self.delay}")
        require(self.timeout > 0, f"timeout must be > 0, got {self.timeout}")
        require(self.retries >= 0, f"retries must be >= 0, got {self.retries}")
        require(self.backoff >= 0, f"backoff must be >= 0, got {self.backoff}")
        require(self.max_redirects >= 0, f"max_redirects must be >= 0, got {self.max_redirects}")
        require(bool(self.user_agent.strip()), "user_agent must not be empty")
        require(self.warc_mb > 0, f"warc_mb must be > 0, got {self.warc_mb}")
        return self
