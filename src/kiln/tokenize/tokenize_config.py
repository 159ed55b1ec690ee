"""`TokenizeConfig`: one `kiln tokenize` run as a typed object (a TOML file can hold it; every field is a
command-line option of the same name). A run writes it back as `<out_dir>/kiln-tokenize.toml`, so `kiln tokenize
<out_dir>/kiln-tokenize.toml` resumes or repeats it."""

from __future__ import annotations

from dataclasses import dataclass

from kiln.utils.checks import require


@dataclass
class TokenizeConfig:
    """A `kiln tokenize` run: which corpus, which tokenizer, how the val split is drawn, and where the shards go."""

    inputs: list[str]
    """Corpus files (.txt, .md, .jsonl, .parquet; .txt/.md/.jsonl optionally .gz) or directories searched for
    them."""
    tokenizer: str
    """A tokenizer directory (from `kiln tokenizer train`), 'byte', or a pretrained vocabulary name (gpt2,
    cl100k_base, o200k_base, ...)."""
    out_dir: str = "data/tokens"
    """Output directory: train_*.bin, val_*.bin, tokenizer/, plan.json, parts/, summary.json and the resolved
    config; the same command again resumes an interrupted run in it."""
    workers: int = 0
    """Processes encoding parts in parallel (0 = one per CPU)."""
    val_fraction: float = 0.02
    """Share of segments (documents, or ~segment_kb pieces of longer ones) held out for validation."""
    text_field: str = "text"
    """The JSONL key / Parquet column that holds a document's text."""
    separator: str | None = None
    """Split .txt/.md files into documents at this string, e.g. '<|endoftext|>' (unset: a file is one document)."""
    part_mb: float = 32.0
    """Input MB per work unit, and so per shard (a small corpus is cut into ~64 parts of at least 1 MB)."""
    segment_kb: int = 64
    """Longer documents are cut into pieces of about this many KB for drawing the val split (lowered
    automatically on a corpus too small to give val about 8 pieces)."""
    overwrite: bool = False
    """Replace shards of a different corpus, tokenizer or settings in out_dir instead of refusing."""
    quiet: bool = False
    """No progress bar (the summary lines are still printed)."""

    def validate(self) -> TokenizeConfig:
        require(bool(self.inputs), "inputs: give at least one corpus file or directory")
        require(bool(self.out_dir), "out_dir must be a directory name")
        require(bool(self.tokenizer), "tokenizer: give a tokenizer directory, 'byte' or a pretrained name")
        require(self.workers >= 0, f"workers must be >= 0 (0 = one per CPU), got {self.workers}")
        require(0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        require(self.part_mb > 0, f"part_mb must be > 0, got {self.part_mb}")
        require(self.segment_kb > 0, f"segment_kb must be > 0, got {self.segment_kb}")
        require(bool(self.text_field), "text_field must be a non-empty name")
        require(self.separator != "", "separator must be non-empty when given")
        return self
