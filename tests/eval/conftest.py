"""Tests of kiln.eval: task files, scoring with the KV cache, metrics, bits per byte, lm-evaluation-harness parity.

The reference pair: one small GPT-2 built with transformers and the same weights in kiln (via kiln.model.hf), with
GPT-2's real vocabulary on both sides, so kiln's scores can be checked against the harness's HF backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def gpt2_pair(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """(HF GPT2LMHeadModel, HF tokenizer, kiln GPT, kiln tokenizer): same weights, same vocabulary."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from kiln.model import GPT
    from kiln.model.hf import from_hf_gpt2, gpt2_config
    from kiln.tokenizer import get_tokenizer
    from kiln.tokenizer.hf_export import export_hf

    tok = get_tokenizer(shared_data / "tokenizers" / "gpt2")
    hf_tok = GPT2TokenizerFast(tokenizer_file=str(export_hf(tok, tmp_path_factory.mktemp("tok") / "tokenizer.json")))
    torch.manual_seed(0)
    # A wide init (std 0.2, not 0.02): log-likelihoods of a random model would otherwise sit within float noise of
    # each other and the argmax would be decided by rounding, not by the model.
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=64, n_positions=128, initializer_range=0.2)
    hf = GPT2LMHeadModel(cfg).eval()
    model = GPT(gpt2_config(2, 2, 64, block_size=128)).eval()
    model.load_state_dict(from_hf_gpt2(hf.state_dict(), 2))
    return hf, hf_tok, model, tok
