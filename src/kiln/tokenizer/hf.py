"""A Hugging Face `tokenizer.json` as a kiln tokenizer, encoded by the `tokenizers` library itself.

Imported models (`kiln import hf`) bring vocabularies of every family: GPT-2's byte-level BPE, Llama 3's
tiktoken-style BPE, Llama 2 / Mistral's SentencePiece-style BPE with byte fallback. Re-implementing each
family's normaliser, pre-tokenizer and decoder would be a second source of truth that can only drift; the
`tokenizers` library is the reference, so its ids are the model's ids by construction. kiln adds what its own
interface needs: each id's bytes (for streaming and the playground's token view) and the special tokens by name.

Special tokens follow kiln's rule (`BPETokenizer`): `encode(text)` treats "<|endoftext|>" in text as ordinary
text; only names in `allowed_special` become special ids, so a web page cannot inject a document boundary.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, Literal

from kiln.tokenizer.base import META_FILE
from kiln.utils.io import atomic_write_text

TOKENIZER_JSON = "tokenizer.json"
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


class HFTokenizer:
    """A `tokenizers.Tokenizer` behind kiln's `Tokenizer` interface."""

    kind = "hf"

    def __init__(
        self,
        document: dict[str, Any],
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        chat_template: str | None = None,
    ):
        from tokenizers import Tokenizer as Backend

        self.document = document
        try:
            self._backend = Backend.from_str(json.dumps(document))
        except Exception as e:  # the Rust side raises its own Exception type for every malformed document
            raise ValueError(f"not a valid Hugging Face tokenizer.json ({e})") from e
        added = document.get("added_tokens") or []
        self._special = {t["content"]: int(t["id"]) for t in added if t.get("special", False)}
        # A second backend without the special added tokens encodes ordinary text: the library matches added
        # tokens in any input, and kiln's rule is that special names in text are ordinary characters.
        plain = {**document, "added_tokens": [t for t in added if not t.get("special", False)]}
        self._ordinary = Backend.from_str(json.dumps(plain)) if self._special else self._backend
        for backend in (self._backend, self._ordinary):
            backend.no_truncation()
            backend.no_padding()
        self.bos_token, self.eos_token = bos_token, eos_token
        # The model's own Jinja chat template (tokenizer_config.json), kept so an export carries it on.
        self.chat_template = chat_template
        self._byte_level = _uses_byte_level(document)
        self._show: dict[str, int] | None = None
        # The "special" split: the text between special tokens goes through the backend without specials.
        self._split_cache: dict[frozenset[str], re.Pattern[str]] = {}

    # ------------------------------------------------------------------------------------------------ interface

    @property
    def vocab_size(self) -> int:
        """One past the largest id (ordinary or added): the size a model's embedding table needs."""
        return max(self._backend.get_vocab(with_added_tokens=True).values(), default=-1) + 1

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    @property
    def eot_id(self) -> int | None:
        """The end-of-document token the model was trained with (tokenizer_config's eos_token), if known."""
        return self._special.get(self.eos_token) if self.eos_token else None

    def encode(self, text: str, allowed_special: Collection[str] | Literal["all"] = ()) -> list[int]:
        """Token ids of `text`; special-token text stays ordinary text unless allowed by name."""
        allowed = set(self._special) if allowed_special == "all" else set(allowed_special)
        unknown = sorted(allowed - set(self._special))
        if unknown:
            raise ValueError(f"unknown special token(s) {unknown}; this tokenizer has: {', '.join(self._special)}")
        if not allowed:
            return self._plain(text)
        key = frozenset(allowed)
        if key not in self._split_cache:
            names = sorted(allowed, key=len, reverse=True)
            self._split_cache[key] = re.compile("(" + "|".join(map(re.escape, names)) + ")")
        ids: list[int] = []
        for i, piece in enumerate(self._split_cache[key].split(text)):
            if i % 2:
                ids.append(self._special[piece])
            elif piece:
                ids.extend(self._plain(piece))
        return ids

    def _plain(self, text: str) -> list[int]:
        return self._ordinary.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self._backend.decode(list(ids), skip_special_tokens=False)

    def id_to_bytes(self, token_id: int) -> bytes:
        """The bytes this token stands for: byte-level tokens through GPT-2's byte map, SentencePiece pieces
        with "▁" as a space and <0xNN> as one byte; added tokens as their UTF-8 text."""
        token = self._backend.id_to_token(token_id)
        if token is None:
            return b"\xef\xbf\xbd"
        if token in self._special or self._backend.token_to_id(token) is None:
            return token.encode("utf-8")
        if self._byte_level:
            if self._show is None:
                from kiln.tokenizer.pretrained import bytes_to_unicode

                self._show = {c: b for b, c in bytes_to_unicode().items()}
            if all(c in self._show for c in token):
                return bytes(self._show[c] for c in token)
            return token.encode("utf-8")
        m = _BYTE_FALLBACK.match(token)
        if m:
            return bytes([int(m.group(1), 16)])
        return token.replace("\u2581", " ").encode("utf-8")

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / TOKENIZER_JSON, json.dumps(self.document, ensure_ascii=False))
        meta = {
            "kind": self.kind,
            "file": TOKENIZER_JSON,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "chat_template": self.chat_template,
        }
        atomic_write_text(directory / META_FILE, json.dumps(meta))

    @classmethod
    def from_meta(cls, meta: dict[str, Any], path: Path) -> HFTokenizer:
        name = meta.get("file", TOKENIZER_JSON)
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"{path}: 'file' must be a file name beside it, got {name!r}")
        template = meta.get("chat_template")
        return cls.from_file(
            path.parent / name,
            bos_token=meta.get("bos_token"),
            eos_token=meta.get("eos_token"),
            chat_template=template if isinstance(template, str) else None,
        )

    @classmethod
    def from_file(
        cls,
        file: str | Path,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        chat_template: str | None = None,
    ) -> HFTokenizer:
        file = Path(file)
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{file} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{file}: not valid JSON ({e})") from e
        if not isinstance(document, dict) or "model" not in document:
            raise ValueError(f"{file}: not a Hugging Face tokenizer.json (no 'model')")
        try:
            return cls(document, bos_token=bos_token, eos_token=eos_token, chat_template=chat_template)
        except ValueError as e:
            raise ValueError(f"{file}: {e}") from e

    def __repr__(self) -> str:
        return f"HFTokenizer({self.document.get('model', {}).get('type')}, vocab={self.vocab_size})"


def _uses_byte_level(document: dict[str, Any]) -> bool:
    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("type") == "ByteLevel" or any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(document.get("pre_tokenizer")) or walk(document.get("decoder"))
