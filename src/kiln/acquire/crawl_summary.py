"""`CrawlSummary`: what a `kiln crawl` run did; the lines the terminal shows, and `<out_dir>/summary.json`."""

from __future__ import annotations

from dataclasses import dataclass, field

from kiln.stage import Summary

SUMMARY_FILE = "summary.json"


@dataclass
class CrawlSummary(Summary):
    """Counts over the whole crawl (this run and the ones it continues), except where a name says "this run"."""

    pages: int
    """Pages written to WARC so far."""
    pages_this_run: int
    """Of those, the pages this run wrote."""
    bytes: int
    """Body bytes written to WARC so far."""
    redirects: int
    """URLs that answered with a redirect (its target is queued like a link)."""
    skipped: dict[str, int]
    """URLs not fetched or not kept, by reason (robots.txt, content type, ...)."""
    failed: dict[str, int]
    """URLs given up on, by reason (http 404, timeout, too many redirects, ...)."""
    queued: int
    """URLs still waiting (a limit such as max_pages stopped the crawl first)."""
    retries: int
    """Attempts repeated after a 5xx, 429, timeout or network error."""
    recovered_from_warc: int
    """Pages found in the WARC files but not in the state (written just before an interruption), taken in."""
    seconds: float
    """Wall time of this run."""
    out_dir: str
    """The output directory."""
    warc_files: list[str] = field(default_factory=list)
    """The WARC files in out_dir, in order."""

    def render(self) -> str:
        rate = self.pages_this_run / max(self.seconds, 1e-9)
        lines = [
            f"{self.pages:,} pages ({self.bytes / 1e6:,.1f} MB), {self.pages_this_run:,} of them in this run"
            f" ({self.seconds:.1f} s, {rate:,.1f} pages/s); {self.redirects:,} redirects, {self.queued:,} still queued"
            f" -> {self.out_dir}"
        ]
        for label, reasons in (("skipped", self.skipped), ("failed", self.failed)):
            if reasons:
                lines.append(f"{label}: " + ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())))
        if self.recovered_from_warc:
            lines.append(f"recovered {self.recovered_from_warc} page(s) written just before an interruption")
        return "\n".join(lines)
