"""Tests of kiln.tokenizer: the tokenizer algorithms: char, byte, word and byte-level BPE, training, and
OpenAI's vocabularies against tiktoken.

Shared fixtures of these tests go here; helpers shared with other packages are in tests/helpers.py."""
