"""Loading a tokenizer: from its saved directory, or from any name a command line can give.

Apart from `base` because it imports every tokenizer kind, and each kind imports `base`: keeping the registry
here means no module of this package imports back into the one that imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

from kiln.tokenizer.base import META_FILE, Tokenizer
from kiln.utils.suggest import did_you_mean, near_path


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load whatever kind of tokenizer was saved in `directory`; a missing or malformed file is a clear error."""
    from kiln.tokenizer.bpe import BPETokenizer
    from kiln.tokenizer.byte import ByteTokenizer
    from kiln.tokenizer.char import CharTokenizer
    from kiln.tokenizer.hf import HFTokenizer
    from kiln.tokenizer.word import WordTokenizer

    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no tokenizer at {directory}: {META_FILE} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid tokenizer file ({e})") from e
    kinds = {
        "char": CharTokenizer,
        "byte": ByteTokenizer,
        "word": WordTokenizer,
        "bpe": BPETokenizer,
        "hf": HFTokenizer,
    }
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind not in kinds:
        raise ValueError(f"{path}: unknown tokenizer kind {kind!r}; known: {', '.join(kinds)}")
    return kinds[kind].from_meta(meta, path)


def get_tokenizer(spec: str | Path) -> Tokenizer:
    """Any tokenizer a command line can name: a saved kiln tokenizer directory; "byte"; one of OpenAI's
    vocabularies by name ("gpt2", "cl100k_base", ...); a `.tiktoken` file named after one; or a directory with
    GPT-2's encoder.json + vocab.bpe. Named vocabularies are read from $KILN_VOCAB_DIR when it holds them,
    else fetched (and cached) the way tiktoken does."""
    import os

    from kiln.tokenizer.byte import ByteTokenizer
    from kiln.tokenizer.pretrained import ALIASES, GPT2_FILES, PRETRAINED, load_pretrained, pretrained_names

    text = str(spec)
    path = Path(text)
    if (path / META_FILE).is_file():
        return load_tokenizer(path)
    if text == "byte":
        return ByteTokenizer()
    if path.is_dir() and all((path / f).is_file() for f in GPT2_FILES):
        return load_pretrained("gpt2", path)
    if path.suffix == ".tiktoken":
        if path.stem not in PRETRAINED:
            raise ValueError(f"{path}: a .tiktoken file must be named after its encoding ({', '.join(PRETRAINED)})")
        return load_pretrained(path.stem, path)
    if text in PRETRAINED or text in ALIASES:
        local = os.environ.get("KILN_VOCAB_DIR")
        if local:
            name = ALIASES.get(text, text)
            for candidate in (Path(local) / f"{name}.tiktoken", Path(local) / "tiktoken" / f"{name}.tiktoken"):
                if candidate.is_file():
                    return load_pretrained(name, candidate)
        return load_pretrained(text)
    if path.exists():
        raise FileNotFoundError(f"{path} holds no tokenizer ({META_FILE}, .tiktoken, or encoder.json + vocab.bpe)")
    names = ["byte", *pretrained_names()]
    near = near_path(path, accept=lambda p: (p / META_FILE).is_file())  # a mistyped tokenizer directory
    hint = f"; did you mean {str(near)!r}?" if near is not None else did_you_mean(text, names)
    raise ValueError(
        f"unknown tokenizer {text!r}{hint} (give a tokenizer directory, 'byte', or one of: {', '.join(names[1:])})"
    )
