"""Tests of kiln.generate: sampling, stop strings, the KV-cache engine and continuous batching (batched == solo).

Shared fixtures of these tests go here; helpers shared with other packages are in tests/helpers.py."""

import pytest


@pytest.fixture
def looks_bf16(monkeypatch):
    """The CPU made to look as if it computed in bf16 (`gpt.bf16_on_cpu`) while the arithmetic stays fp32: the
    shape-bucketing paths then run, and must give exactly the unpadded paths' tokens."""
    from kiln.model import gpt

    monkeypatch.setattr(gpt, "bf16_on_cpu", lambda *_: True)
