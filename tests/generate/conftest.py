"""Tests of kiln.generate: sampling, stop strings, the KV-cache engine and continuous batching (batched == solo).

Shared fixtures of these tests go here; helpers shared with other packages are in tests/helpers.py."""
