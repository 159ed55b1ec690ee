"""`TokenizeSummary`: what a `kiln tokenize` run did; the lines the terminal shows, and `<out_dir>/summary.json`."""

from __future__ import annotations

from dataclasses import dataclass, field

from kiln.stage import Summary

SUMMARY_FILE = "summary.json"


@dataclass
class TokenizeSummary(Summary):
    """Counts over every part of the corpus (those done by earlier, interrupted runs too)."""

    input_bytes: int
    """Bytes of the input files."""
    documents: int
    """Documents read."""
    segments: int
    """Pieces the val split was drawn from (documents, or ~segment_kb pieces of longer ones)."""
    text_bytes: int
    """UTF-8 bytes of document text encoded."""
    train_tokens: int
    """Tokens in the train shards, <|endoftext|> separators included."""
    val_tokens: int
    """Tokens in the val shards, <|endoftext|> separators included."""
    separators: int
    """<|endoftext|> tokens written between documents (none if the tokenizer has no such token)."""
    replaced_bytes: int
    """Input bytes that were not valid UTF-8 and were read as U+FFFD."""
    skipped_records: int
    """JSONL/Parquet records without usable text, skipped."""
    tokens: int
    """train_tokens + val_tokens."""
    bytes_per_token: float
    """Text bytes per token, separators not counted: the tokenizer's compression on this corpus."""
    vocab_size: int
    """The tokenizer's vocabulary size (the shards' ids are below it)."""
    parts: int
    """Work units the corpus was cut into (one train and one val shard each)."""
    parts_resumed: int
    """Parts already finished by an earlier run, not redone."""
    problems: list[str] = field(default_factory=list)
    """The first few skipped records, each naming its file."""
    seconds: float = 0.0
    """Wall time of this run."""
    out_dir: str = ""
    """The output directory."""

    def render(self) -> str:
        rate = self.text_bytes / 1e6 / max(self.seconds, 1e-9)
        lines = [
            f"{self.documents:,} documents, {self.tokens:,} tokens (train {self.train_tokens:,}, val "
            f"{self.val_tokens:,}), {self.text_bytes / 1e6:,.1f} MB of text, {self.bytes_per_token:.2f} bytes/token",
            f"{self.parts} parts ({self.parts_resumed} already done) in {self.seconds:.1f} s ({rate:,.1f} MB/s)"
            f" -> {self.out_dir}",
        ]
        if self.replaced_bytes:
            lines.append(f"note: {self.replaced_bytes:,} bytes were not valid UTF-8 and were read as U+FFFD")
        if self.skipped_records:
            lines.append(f"note: skipped {self.skipped_records:,} records, e.g. {self.problems[0]}")
        return "\n".join(lines)
