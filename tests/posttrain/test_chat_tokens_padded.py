"""`kiln chat-tokens` on a vocabulary-padded model: the new ids get the mean of the *real* rows, not the
padding rows that happened to sit at their index (which no token ever trained)."""

from __future__ import annotations

import pytest
import torch

from helpers import run_cli
from kiln.model import GPT, GPTConfig
from kiln.model.checkpoint import load_checkpoint, save_checkpoint
from kiln.tokenizer import train_bpe

openai = pytest.importorskip("openai")  # as test_chat_tokens: the chat-tokens command's tests need the extras


def test_new_chat_token_rows_are_the_mean_of_the_real_rows(tmp_path):
    tok = train_bpe(["some text to learn a few merges from " * 30], vocab_size=270)
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=tok.vocab_size, vocab_multiple_of=64, block_size=32, n_layer=1, n_head=2, n_embd=32)
    model = GPT(cfg)
    with torch.no_grad():
        model.wte.weight[tok.vocab_size :] = 100.0  # padding rows: must not become the chat tokens' rows
    assert cfg.padded_vocab_size >= tok.vocab_size + 2  # the new ids fall inside the padding
    save_checkpoint(tmp_path / "bpe", model, tok)
    rc, _out, err = run_cli(["chat-tokens", str(tmp_path / "bpe"), "--out", str(tmp_path / "chat")])
    assert rc == 0, err
    grown, _, _ = load_checkpoint(tmp_path / "chat")
    assert grown.config.vocab_size == tok.vocab_size + 2 and grown.config.vocab_multiple_of == 64
    old, new = model.wte.weight.detach(), grown.wte.weight.detach()
    real = old[: tok.vocab_size]
    assert torch.equal(new[: tok.vocab_size], real)
    assert torch.allclose(new[tok.vocab_size : tok.vocab_size + 2], real.mean(0, keepdim=True).expand(2, -1))
