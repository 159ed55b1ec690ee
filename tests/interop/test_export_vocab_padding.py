"""A vocabulary-padded kiln model (`vocab_multiple_of`) exports with the tokenizer's rows only: transformers
loads it with config vocab_size = the tokenizer's size and computes the same logits as kiln."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from interop_support import LLAMA, SHAPE, export, randomize  # noqa: E402

from kiln.model import GPT, GPTConfig  # noqa: E402
from kiln.model.checkpoint import save_checkpoint  # noqa: E402


@pytest.mark.parametrize("arch", [{}, {**LLAMA, "tie_embeddings": False}], ids=["gpt2-tied", "llama-untied"])
def test_padded_model_exports_its_real_rows(tmp_path, bpe_tokenizer, arch):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=bpe_tokenizer.vocab_size, vocab_multiple_of=128, **SHAPE, **arch)).eval()
    randomize(model, 5)
    assert model.wte.weight.shape[0] > bpe_tokenizer.vocab_size
    out = export(save_checkpoint(tmp_path / "ckpt", model, bpe_tokenizer), tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["vocab_size"] == bpe_tokenizer.vocab_size
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert hf.get_input_embeddings().weight.shape[0] == bpe_tokenizer.vocab_size
    ids = torch.randint(0, bpe_tokenizer.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, _ = model(ids, all_logits=True)
        theirs = hf(ids).logits
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() <= 1e-4
