"""Tests of kiln.model: the transformer and its options against independent references (Hugging Face
transformers, naive attention), and checkpoints.

Shared fixtures of these tests go here; helpers shared with other packages are in tests/helpers.py."""
