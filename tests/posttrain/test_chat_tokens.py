"""`kiln chat-tokens` gives a base model the chat tokens (new rows at the mean embedding)."""

from __future__ import annotations

import pytest
import torch

from helpers import run_cli
from kiln.model.checkpoint import load_checkpoint

openai = pytest.importorskip("openai")


def test_chat_tokens_grow_the_vocabulary_with_mean_rows(tmp_path):
    base = tmp_path / "base"
    rc, _, err = run_cli(["train", "preset=tiny", "model.n_layer=1", "model.n_embd=32", "model.n_head=2",
                          "model.block_size=32", "batch_size=4", "max_steps=2", "eval_batches=1", "sample_tokens=0",
                          "device=cpu", "warmup_steps=1", f"out_dir={base}"])  # fmt: skip
    assert rc == 0, err
    rc, _, err = run_cli(["chat-tokens", str(base), "--out", str(tmp_path / "chat")])
    assert rc == 2 and "BPE" in err  # the default run is char-level: no special tokens to add to

    from kiln.model import GPT, GPTConfig
    from kiln.model.checkpoint import save_checkpoint
    from kiln.tokenizer import train_bpe

    tok = train_bpe(["some text to learn a few merges from " * 30], vocab_size=270)
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32, tie_embeddings=False)
    )
    save_checkpoint(tmp_path / "bpe", model, tok)
    rc, _out, err = run_cli(["chat-tokens", str(tmp_path / "bpe"), "--out", str(tmp_path / "chat")])
    assert rc == 0, err
    grown, new_tok, _ = load_checkpoint(tmp_path / "chat")
    ids = [new_tok.special_tokens[t] for t in ("<|im_start|>", "<|im_end|>")]
    assert ids == [tok.vocab_size, tok.vocab_size + 1] and grown.config.vocab_size == tok.vocab_size + 2
    for name in ("wte.weight", "lm_head.weight"):
        old, new = model.state_dict()[name], grown.state_dict()[name]
        assert torch.equal(new[: tok.vocab_size], old)
        assert torch.allclose(new[tok.vocab_size :], old.mean(0, keepdim=True).expand(2, -1))
