"""`kiln tokenizer train`: read a corpus and learn a tokenizer's vocabulary from it, saved as a tokenizer directory.

This stage belongs to the tokenize package because it reads corpora (`kiln.tokenize.corpus`, the same reader
`kiln tokenize` uses, so both see the same documents); the algorithms (byte-level BPE, word, char) are
`kiln.tokenizer`'s. The directory gets the tokenizer's own files and, once training succeeded, the resolved
config `kiln-tokenizer-train.toml` (which no tokenizer loader reads, and which checkpoints and shard directories
do not copy: they save the tokenizer afresh).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kiln.stage import Summary, write_resolved_config
from kiln.utils.checks import require
from kiln.utils.progress import progress_bar

__all__ = ["TokenizerTrainConfig", "TokenizerTrainSummary", "run"]

KINDS = ("bpe", "word", "char")
TRAINERS = ("rustbpe", "reference")


@dataclass
class TokenizerTrainConfig:
    """A `kiln tokenizer train` run: which corpus, which kind of tokenizer and how big, and where it is saved."""

    inputs: list[str]
    """Corpus files (.txt, .md, .jsonl, .parquet; .txt/.md/.jsonl optionally .gz) or directories searched for
    them."""
    out_dir: str = "tokenizer"
    """Directory to save the tokenizer in (kiln-tokenizer.json, ranks.tiktoken for BPE, the resolved config)."""
    kind: Literal["bpe", "word", "char"] = "bpe"
    """bpe: byte-level BPE as GPT-2/GPT-4 use; word: the most frequent words and punctuation; char: every
    character of the corpus."""
    vocab_size: int = 8192
    """Total ids: for bpe the 256 bytes + merges + special tokens; for word the words + <|unk|> + special tokens
    (char takes as many as the corpus has characters)."""
    pattern: str = "gpt4"
    """bpe's split pattern (text is cut into pieces before merging; no merge crosses a piece): gpt4, gpt2,
    o200k, or a regex."""
    trainer: Literal["rustbpe", "reference"] = "rustbpe"
    """bpe's trainer: rustbpe (fast) or reference (kiln's readable Python; the same merges)."""
    special: list[str] = field(default_factory=list)
    """Extra special tokens (bpe and word); <|endoftext|> is always one."""
    chat_tokens: bool = True
    """Reserve ChatML's <|im_start|> and <|im_end|> (bpe and word), so the model can be fine-tuned to chat without
    resizing its embeddings later (--no-chat-tokens leaves them out)."""
    text_field: str = "text"
    """The JSONL key / Parquet column that holds a document's text."""
    separator: str | None = None
    """Split .txt/.md files into documents at this string, e.g. '<|endoftext|>' (unset: a file is one document)."""
    max_mb: float = 0.0
    """Read at most about this many MB of the corpus (0 = all of it)."""
    hf: bool = False
    """Also write a Hugging Face tokenizer.json (bpe only; ignored for word and char)."""
    quiet: bool = False
    """No progress bar (the summary lines are still printed)."""

    def special_tokens(self) -> list[str]:
        """<|endoftext|>, then `special`, then the chat tokens if asked for, each once."""
        from kiln.tokenizer.bpe import CHAT_TOKENS, ENDOFTEXT

        return list(dict.fromkeys([ENDOFTEXT, *self.special, *(CHAT_TOKENS if self.chat_tokens else ())]))

    def validate(self) -> TokenizerTrainConfig:
        from kiln.tokenizer.bpe_train import MAX_VOCAB_SIZE, check_vocab_size
        from kiln.tokenizer.patterns import resolve_pattern

        require(bool(self.inputs), "inputs: give at least one corpus file or directory")
        require(bool(self.out_dir), "out_dir must be a directory name")
        require(self.kind in KINDS, f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        require(self.trainer in TRAINERS, f"trainer must be one of {', '.join(TRAINERS)}, got {self.trainer!r}")
        require(all(self.special), "special: a special token needs a non-empty name")
        require(self.max_mb >= 0, f"max_mb must be >= 0 (0 = the whole corpus), got {self.max_mb}")
        require(bool(self.text_field), "text_field must be a non-empty name")
        require(self.separator != "", "separator must be non-empty when given")
        if self.kind == "bpe":
            check_vocab_size(self.vocab_size, self.special_tokens())  # the message names vocab_size
            resolve_pattern(self.pattern)  # the message names the split pattern
        elif self.kind == "word":
            require(self.vocab_size <= MAX_VOCAB_SIZE, f"vocab_size {self.vocab_size:,} is too large: at most "
                    f"{MAX_VOCAB_SIZE:,} (2**24; every id is a row of the model's embedding)")  # fmt: skip
            least = len(self.special_tokens()) + 2
            require(self.vocab_size >= least, f"vocab_size {self.vocab_size} is too small: a word vocabulary holds "
                    f"<|unk|>, {least - 2} special token(s) and at least one word ({least})")  # fmt: skip
        return self


@dataclass
class TokenizerTrainSummary(Summary):
    """What the training read and made."""

    kind: str
    """The kind of tokenizer trained."""
    vocab_size: int
    """Its vocabulary size (bpe can end below the asked-for size on a corpus too small for every merge)."""
    documents: int
    """Documents read."""
    text_bytes: int
    """UTF-8 bytes of document text read."""
    seconds: float
    """Wall time of reading and training."""
    out_dir: str
    """Where the tokenizer was saved."""
    replaced_bytes: int = 0
    """Input bytes that were not valid UTF-8 and were read as U+FFFD."""
    skipped_records: int = 0
    """JSONL/Parquet records without usable text, skipped."""
    problems: list[str] = field(default_factory=list)
    """The first few skipped records, each naming its file."""
    hf_json: str | None = None
    """The Hugging Face tokenizer.json written, if any."""

    def render(self) -> str:
        lines = [
            f"{self.kind} tokenizer: vocab {self.vocab_size:,} from {self.documents:,} documents "
            f"({self.text_bytes / 1e6:,.1f} MB of text) in {self.seconds:.1f} s -> {self.out_dir}"
        ]
        if self.replaced_bytes:
            lines.append(f"note: {self.replaced_bytes:,} bytes were not valid UTF-8 and were read as U+FFFD")
        if self.skipped_records:
            lines.append(f"note: skipped {self.skipped_records:,} records, e.g. {self.problems[0]}")
        if self.hf_json:
            lines.append(f"Hugging Face tokenizer.json: {self.hf_json}")
        return "\n".join(lines)


def run(config: TokenizerTrainConfig) -> TokenizerTrainSummary:
    """Train and save the tokenizer. Nothing is written unless training succeeds (a bad setting or an empty corpus
    leaves no directory behind)."""
    from kiln.tokenize.corpus import ReadStats, iter_corpus
    from kiln.tokenizer import CharTokenizer, WordTokenizer, train_bpe
    from kiln.tokenizer.hf_export import export_hf

    config.validate()
    specials = config.special_tokens()
    stats = ReadStats()
    max_bytes = int(config.max_mb * 1e6) if config.max_mb else None
    texts = iter_corpus(config.inputs, stats, config.text_field, config.separator, max_bytes)
    bar = progress_bar(texts, desc="reading", unit=" docs", dynamic_ncols=True, disable=config.quiet)
    t0 = time.perf_counter()
    try:
        if config.kind == "bpe":
            tok = train_bpe(bar, config.vocab_size, config.pattern, specials, config.trainer)
        elif config.kind == "word":
            tok = WordTokenizer.train(bar, config.vocab_size, specials)
        else:
            text = "".join(bar)
            if not text:
                raise ValueError("cannot train a tokenizer on an empty corpus (no text in any document)")
            tok = CharTokenizer.train(text)
    except ValueError:
        if stats.text_bytes == 0:  # the corpus's fault: say which files, and what reading them found
            found = f"; skipped {stats.skipped_records} record(s), e.g. {stats.problems[0]}" if stats.problems else ""
            raise ValueError(
                f"cannot train a tokenizer on an empty corpus: no document text in {', '.join(config.inputs)}{found}"
            ) from None
        raise
    bar.close()
    seconds = time.perf_counter() - t0
    tok.save(config.out_dir)
    write_resolved_config(config, config.out_dir, "tokenizer train")
    hf_json = export_hf(tok, Path(config.out_dir) / "tokenizer.json") if config.hf and config.kind == "bpe" else None
    return TokenizerTrainSummary(
        kind=config.kind,
        vocab_size=tok.vocab_size,
        documents=stats.documents,
        text_bytes=stats.text_bytes,
        seconds=seconds,
        out_dir=config.out_dir,
        replaced_bytes=stats.replaced_bytes,
        skipped_records=stats.skipped_records,
        problems=list(stats.problems),
        hf_json=str(hf_json) if hf_json is not None else None,
    )
