"""`kiln serve --models DIR` offers models imported from Hugging Face beside trained ones, and stops at the
imported tokenizer's own end-of-text token."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
openai = pytest.importorskip("openai")

from serve_support import run_server  # noqa: E402

from helpers import run_cli, sentence_corpus  # noqa: E402
from kiln.generate import SamplingParams, generate  # noqa: E402
from kiln.interop.hf_tokenizer import tokenizer_config, tokenizer_json  # noqa: E402
from kiln.model.checkpoint import load_checkpoint  # noqa: E402
from kiln.tokenizer import train_bpe  # noqa: E402


def test_an_imported_llama_is_listed_and_completes_like_kiln_generate(tmp_path):
    tok = train_bpe([sentence_corpus(200, seed=5)], vocab_size=320, special_tokens=["<|end_of_text|>"])
    config = transformers.LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config)
    src = tmp_path / "hf"
    hf.save_pretrained(src)
    (src / "tokenizer.json").write_text(json.dumps(tokenizer_json(tok)))
    tc = {**tokenizer_config(tok, 64), "eos_token": "<|end_of_text|>", "bos_token": "<|end_of_text|>"}
    (src / "tokenizer_config.json").write_text(json.dumps(tc))
    models = tmp_path / "models"
    rc, _, err = run_cli(["import", "hf", str(src), "--out", str(models / "imported-llama")])
    assert rc == 0, err

    model, kiln_tok, _ = load_checkpoint(models / "imported-llama")
    prompt = "the quick brown"
    eos = tok.special_tokens["<|end_of_text|>"]
    expected = generate(
        model, kiln_tok.encode(prompt), SamplingParams(temperature=0.0, max_new_tokens=12, stop_token_ids=(eos,))
    )
    with run_server(models) as server:
        client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused")
        assert "imported-llama" in [m.id for m in client.models.list().data]
        reply = client.completions.create(model="imported-llama", prompt=prompt, max_tokens=12, temperature=0)
    assert reply.choices[0].text == kiln_tok.decode(expected.tokens)
    assert reply.usage.prompt_tokens == len(kiln_tok.encode(prompt))
