"""kiln.tokenizer: text <-> token ids. Character, byte, word-level and byte-level BPE tokenizers behind one
interface (`Tokenizer`) and one save format (a directory with `kiln-tokenizer.json`); BPE training
(`train_bpe`) and OpenAI's vocabularies (`load_pretrained`). Reading corpora and the token shard format are the
tokenize stage's (`kiln.tokenize`)."""

from kiln.tokenizer.base import Tokenizer
from kiln.tokenizer.bpe import ENDOFTEXT, BPETokenizer
from kiln.tokenizer.bpe_train import train_bpe
from kiln.tokenizer.byte import ByteTokenizer
from kiln.tokenizer.char import CharTokenizer
from kiln.tokenizer.pretrained import load_pretrained
from kiln.tokenizer.registry import get_tokenizer, load_tokenizer
from kiln.tokenizer.word import WordTokenizer

__all__ = [
    "ENDOFTEXT",
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "get_tokenizer",
    "load_pretrained",
    "load_tokenizer",
    "train_bpe",
]
