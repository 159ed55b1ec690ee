"""kiln.tokenizer: text <-> token ids. Character-level for now; word-level and byte-level BPE build on
the same interface (`Tokenizer`) and the same save format (a directory with `kiln-tokenizer.json`)."""

from kiln.tokenizer.base import Tokenizer, load_tokenizer
from kiln.tokenizer.byte import ByteTokenizer
from kiln.tokenizer.char import CharTokenizer

__all__ = ["ByteTokenizer", "CharTokenizer", "Tokenizer", "load_tokenizer"]
