"""`IngestConfig`: one `kiln ingest` run as a typed object (a TOML file can hold it; every field is a command-line
option of the same name). A run writes it back as `<out_dir>/kiln-ingest.toml`."""

from __future__ import annotations

from dataclasses import dataclass, field

from kiln.acquire.warc import check_types
from kiln.utils.checks import require

ALL = "all"  # in `type` or `content_type`: keep everything, no filter


@dataclass
class IngestConfig:
    """A `kiln ingest` run: which archives to read, which of their records to keep, and where they go."""

    inputs: list[str]
    """WARC, WET, WAT or ARC files (.warc, .warc.gz, .arc, .arc.gz, ...; gzip or plain), or directories of them."""
    out_dir: str = "ingest"
    """Output directory: ingest-NNNNN.warc.gz (what `kiln clean` reads), ingest-stats.json and the resolved
    config."""
    type: list[str] = field(default_factory=lambda: ["response"])
    """WARC record types to keep (response, conversion, metadata, ...); 'all' keeps every type."""
    content_type: list[str] = field(default_factory=lambda: ["text/html"])
    """Content-type prefixes of the responses to keep (text/html is what `kiln clean` extracts text from);
    'all' keeps every content type."""
    warc_mb: float = 100.0
    """Start a new output WARC file when the current one reaches this size (MiB)."""
    quiet: bool = False
    """Print only the summary line (not the first problem and the counts by record type)."""

    def record_types(self) -> list[str] | None:
        """The record types to keep, or None for all."""
        return None if ALL in self.type else list(self.type)

    def content_types(self) -> list[str] | None:
        """The content-type prefixes to keep, or None for all."""
        return None if ALL in self.content_type else list(self.content_type)

    def validate(self) -> IngestConfig:
        require(bool(self.inputs), "inputs: give at least one WARC/WET/ARC file or directory")
        require(bool(self.out_dir), "out_dir must be a directory name")
        require(bool(self.type), "type: give at least one record type (or 'all')")
        try:
            check_types(self.record_types())
        except ValueError as e:
            raise ValueError(f"type: {e}") from None
        require(bool(self.content_type) and all(c.strip() for c in self.content_type),
                "content_type: give non-empty content-type prefixes (or 'all')")  # fmt: skip
        require(self.warc_mb > 0, f"warc_mb must be > 0, got {self.warc_mb}")
        return self
