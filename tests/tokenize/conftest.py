"""Tests of kiln.tokenize: corpus reading, the token shard format and `kiln tokenize` (parallel, resumable).

Shared fixtures of these tests go here; helpers shared with other packages are in tests/helpers.py."""
