"""`kiln tokenizer encode | decode | show | export-hf`: small commands to use and look inside any tokenizer.

Each is a config and a function returning a Summary, like every stage, so they share the CLI's grammar and help.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from kiln.stage import Summary


@dataclass
class TextSummary(Summary):
    """Output that is only text: ids, decoded text, a rendering, a path."""

    text: str

    def render(self) -> str:
        return self.text


def _text_or_stdin(text: str) -> str:
    return text if text else sys.stdin.read()


@dataclass
class EncodeConfig:
    """Text in, token ids out."""

    tokenizer: str
    """A tokenizer directory, 'byte', or one of OpenAI's vocabularies (gpt2, cl100k_base, o200k_base, ...)."""
    text: str = ""
    """The text to encode (empty: read standard input)."""
    allow_special: bool = False
    """Turn special-token text such as <|endoftext|> into its special id (else it is encoded as plain text)."""


def encode(config: EncodeConfig) -> TextSummary:
    from kiln.tokenizer.registry import get_tokenizer

    tok = get_tokenizer(config.tokenizer)
    text = _text_or_stdin(config.text)
    # Char and byte tokenizers have no special tokens, so there is nothing to allow.
    ids = tok.encode(text, "all") if config.allow_special and tok.special_tokens else tok.encode(text)
    return TextSummary(" ".join(map(str, ids)))


@dataclass
class DecodeConfig:
    """Token ids in, text out."""

    tokenizer: str
    """A tokenizer directory, 'byte', or one of OpenAI's vocabularies (gpt2, cl100k_base, o200k_base, ...)."""
    ids: list[str] = field(default_factory=list)
    """Token ids, separated by spaces or commas (empty: read standard input)."""
    no_newline: bool = False
    """Print the text exactly, without a newline after it."""


def decode(config: DecodeConfig) -> TextSummary:
    from kiln.tokenizer.ids import check_token_ids
    from kiln.tokenizer.registry import get_tokenizer

    tok = get_tokenizer(config.tokenizer)
    raw = (" ".join(config.ids) if config.ids else sys.stdin.read()).replace(",", " ").split()
    try:
        ids = [int(x) for x in raw]
    except ValueError:
        raise ValueError(f"token ids must be integers, got {raw[:5]}") from None
    check_token_ids(ids, tok.vocab_size, f"the tokenizer {config.tokenizer!r}")
    sys.stdout.write(tok.decode(ids) + ("" if config.no_newline else "\n"))
    return TextSummary("")  # written above, byte for byte: print() would add a newline


@dataclass
class ShowConfig:
    """Text split into its tokens, coloured, with ids; several tokenizers side by side."""

    tokenizer: list[str]
    """Tokenizers to compare (repeat --tokenizer): directories, 'byte', or gpt2/cl100k_base/o200k_base/..."""
    text: str = ""
    """The text to show (empty: read standard input)."""
    color: bool = False
    """Colour even when not writing to a terminal."""
    no_color: bool = False
    """Never colour (tokens are then bracketed)."""

    def validate(self) -> ShowConfig:
        if not self.tokenizer:
            raise ValueError("give at least one --tokenizer")
        return self


def show(config: ShowConfig) -> TextSummary:
    from kiln.tokenizer.registry import get_tokenizer
    from kiln.tokenizer.show import render

    config.validate()
    text = _text_or_stdin(config.text)
    colour = (not config.no_color and sys.stdout.isatty()) or config.color
    out = []
    for spec in config.tokenizer:
        tok = get_tokenizer(spec)
        if len(config.tokenizer) > 1:
            out.append(f"== {spec} (vocab {tok.vocab_size:,})")
        out.append(render(tok, text, colour=colour))
    return TextSummary("\n".join(out))


@dataclass
class ExportConfig:
    """A kiln (or OpenAI) byte-level BPE tokenizer as a Hugging Face tokenizer.json."""

    tokenizer: str
    """The BPE tokenizer to export: a directory, or gpt2/cl100k_base/o200k_base/..."""
    out: str
    """A .json path, or a directory to write tokenizer.json into."""


def export(config: ExportConfig) -> TextSummary:
    from kiln.tokenizer.bpe import BPETokenizer
    from kiln.tokenizer.hf_export import export_hf
    from kiln.tokenizer.registry import get_tokenizer

    tok = get_tokenizer(config.tokenizer)
    if not isinstance(tok, BPETokenizer):
        raise ValueError(f"only byte-level BPE tokenizers export to tokenizer.json, not {tok.kind!r}")
    return TextSummary(str(export_hf(tok, config.out)))
