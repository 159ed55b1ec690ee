"""`IngestSummary`: what a `kiln ingest` run did; the lines the terminal shows, and `<out_dir>/ingest-stats.json`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiln.acquire.warc import IngestStats
from kiln.stage import Summary

STATS_FILE = "ingest-stats.json"


@dataclass
class IngestSummary(Summary):
    """The content of ingest-stats.json (what `to_json` gives and `write` writes), plus where it is and how much
    of it the terminal shows."""

    files: int
    """Input files read."""
    records: int
    """Records read, of every type, before filtering."""
    kept: int
    """Records written to the output."""
    skipped_malformed: int
    """Stretches of input that could not be read as records (each counted once; reading goes on after them)."""
    by_type: dict[str, int]
    """Records read, by WARC type, most frequent first."""
    problems: list[str]
    """The first few malformed stretches, each naming its file and offset."""
    inputs: list[str] = field(default_factory=list)
    """The input files, in the order they were read."""
    outputs: list[str] = field(default_factory=list)
    """The WARC files in out_dir."""
    out_dir: str = ""
    """The output directory (not in ingest-stats.json, which lives in it)."""
    quiet: bool = False
    """Render only the summary line, as the run was asked to (not in ingest-stats.json)."""

    @classmethod
    def from_stats(cls, stats: IngestStats, inputs: list[Path], out_dir: str | Path, quiet: bool) -> IngestSummary:
        outputs = sorted(p.name for p in Path(out_dir).glob("ingest-*.warc.gz"))
        return cls(**stats.to_dict(), inputs=[str(p) for p in inputs], outputs=outputs, out_dir=str(out_dir),
                   quiet=quiet)  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_json().items() if k not in ("out_dir", "quiet")}

    def render(self) -> str:
        lines = [
            f"{self.files:,} files, {self.records:,} records read, {self.kept:,} kept, "
            f"{self.skipped_malformed:,} skipped as malformed -> {self.out_dir}"
        ]
        if not self.quiet:
            if self.problems:
                lines.append(f"first problem: {self.problems[0]}")
            lines.append("by type: " + (", ".join(f"{t} {n:,}" for t, n in self.by_type.items()) or "none"))
        return "\n".join(lines)
