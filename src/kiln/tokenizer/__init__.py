"""kiln.tokenizer: text <-> token ids. Character, byte, word-level and byte-level BPE tokenizers behind one
interface (`Tokenizer`) and one save format (a directory with `kiln-tokenizer.json`); BPE training
(`train_bpe`), OpenAI's vocabularies (`load_pretrained`), and the token shard format (`shards`)."""

from kiln.tokenizer.base import Tokenizer, get_tokenizer, load_tokenizer
from kiln.tokenizer.bpe import ENDOFTEXT, BPETokenizer
from kiln.tokenizer.bpe_train import train_bpe
from kiln.tokenizer.byte import ByteTokenizer
from kiln.tokenizer.char import CharTokenizer
from kiln.tokenizer.pretrained import load_pretrained
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
