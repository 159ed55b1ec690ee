"""kiln's GGUF files in llama.cpp itself (through llama-cpp-python), against transformers on the original model.

llama-cpp-python is not a kiln dependency: PyPI has it only as a source distribution (a ~15 minute C++ build
on 2 cores), so these tests skip where it is not installed. Where it is, they check what no reader can: that
llama.cpp's own graph (its RoPE on the permuted q/k rows, its tied head, its MoE routing, its BPE and
pre-tokenizer) computes the model that was exported: greedy tokens identical for 32 steps, prompt logits
close, token ids identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_gguf_export import (  # the fixtures and tiny-model builders of the export tests
    CORPUS,
    ENDOFTEXT,
    LLAMA3_TOKENIZER_CONFIG,
    SAMPLE,
    _gpt2,
    _llama,
    _tj,
    gpt2_style_tokenizer,  # noqa: F401
    llama3_style_tokenizer,  # noqa: F401
    transformers,
)

from kiln.interop.gguf_export import write_gguf

try:
    import llama_cpp
except (ImportError, OSError, RuntimeError) as e:  # absent, or its shared library does not load on this machine
    pytest.skip(
        f"llama-cpp-python does not import ({e}); PyPI ships it as source only, see docs/benchmarks.md",
        allow_module_level=True,
    )
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]

N_TOKENS = 32
# Max |logit difference| from transformers on the original model: llama.cpp keeps its KV cache in f16.
LOGIT_TOLERANCE = {"f32": 1e-3, "f16": 5e-3, "q8_0": 3e-2}


def _run(path, prompt: list[int], n_tokens: int) -> tuple[np.ndarray, list[int]]:
    """(logits after the prompt, `n_tokens` greedy tokens) from llama.cpp, argmax taken here."""
    llm = llama_cpp.Llama(str(path), n_ctx=128, n_threads=1, logits_all=True, verbose=False)
    try:
        llm.eval(prompt)
        first = np.array(llm.scores[llm.n_tokens - 1])
        out = []
        for _ in range(n_tokens):
            out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval([out[-1]])
        return first, out
    finally:
        llm.close()


def _tokenize(path, text: str, add_bos: bool = False) -> list[int]:
    llm = llama_cpp.Llama(str(path), n_ctx=64, n_threads=1, vocab_only=True, verbose=False)
    try:
        return llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
    finally:
        llm.close()


def _reference(model, prompt: list[int]) -> tuple[np.ndarray, list[int]]:
    with torch.no_grad():
        first = model(torch.tensor([prompt])).logits[0, -1].numpy()
        out = model.generate(torch.tensor([prompt]), max_new_tokens=N_TOKENS, do_sample=False, eos_token_id=None)
    return first, out[0, len(prompt) :].tolist()


def _with_random_biases(model):
    """q/k/v/o biases far from zero (transformers starts them at zero): the q/k ones must be permuted like the
    weights. Only llama.cpp is checked here; transformers' GGUF loader (5.x) drops Llama attention biases."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    return model


def _mixtral(vocab_size: int):
    torch.manual_seed(0)
    cfg = transformers.MixtralConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=256,
    )
    return transformers.MixtralForCausalLM(cfg).eval()


@pytest.mark.parametrize(
    ("kind", "dtype"),
    [
        ("gpt2", "f32"),
        ("gpt2-untied", "f16"),
        ("llama-gqa", "f32"),
        ("llama-mqa-tied", "f16"),
        ("llama-attention-bias", "f32"),
        ("mixtral", "f32"),
    ],
)
def test_greedy_tokens_identical_in_llama_cpp(kind, dtype, gpt2_style_tokenizer, llama3_style_tokenizer, tmp_path):  # noqa: F811
    tok = gpt2_style_tokenizer if kind.startswith("gpt2") else llama3_style_tokenizer
    n = tok.get_vocab_size()
    model = {
        "gpt2": lambda: _gpt2(n),
        "gpt2-untied": lambda: _gpt2(n, tied=False),
        "llama-gqa": lambda: _llama(n, n_kv=2),
        "llama-mqa-tied": lambda: _llama(n, n_kv=1, tied=True),
        "llama-attention-bias": lambda: _with_random_biases(_llama(n, attention_bias=True)),
        "mixtral": lambda: _mixtral(n),
    }[kind]()
    path = write_gguf(
        model.config.to_dict(), model.state_dict(), _tj(tok), tmp_path / "m.gguf", dtype=dtype,
        tokenizer_config=None if kind.startswith("gpt2") else LLAMA3_TOKENIZER_CONFIG,
    )  # fmt: skip
    prompt = tok.encode("The quick brown fox").ids
    first, tokens = _run(path, prompt, N_TOKENS)
    ref_first, ref_tokens = _reference(model, prompt)
    assert np.abs(first - ref_first).max() < LOGIT_TOLERANCE[dtype]
    assert tokens == ref_tokens


def test_q8_0_logits_close_in_llama_cpp(llama3_style_tokenizer, tmp_path):  # noqa: F811
    """q8_0 greedy tokens are not compared: llama.cpp also rounds the activations to 8 bits in its q8_0 dot
    products, so a near-tie between two tokens of a random tiny model may go either way."""
    tok = llama3_style_tokenizer
    model = _llama(tok.get_vocab_size())
    path = write_gguf(model.config.to_dict(), model.state_dict(), _tj(tok), tmp_path / "m.gguf", dtype="q8_0")
    prompt = tok.encode("The quick brown fox").ids
    first, _ = _run(path, prompt, 0)
    assert np.abs(first - _reference(model, prompt)[0]).max() < LOGIT_TOLERANCE["q8_0"]


def test_token_ids_identical_in_llama_cpp(gpt2_style_tokenizer, llama3_style_tokenizer, tmp_path):  # noqa: F811
    gpt2 = write_gguf(
        _gpt2(gpt2_style_tokenizer.get_vocab_size()).config.to_dict(),
        _gpt2(gpt2_style_tokenizer.get_vocab_size()).state_dict(),
        _tj(gpt2_style_tokenizer),
        tmp_path / "gpt2.gguf",
    )
    assert _tokenize(gpt2, SAMPLE) == gpt2_style_tokenizer.encode(SAMPLE).ids
    model = _llama(llama3_style_tokenizer.get_vocab_size())
    llama = write_gguf(
        model.config.to_dict(), model.state_dict(), _tj(llama3_style_tokenizer), tmp_path / "llama.gguf",
        tokenizer_config=LLAMA3_TOKENIZER_CONFIG,
    )  # fmt: skip
    text = SAMPLE.replace(ENDOFTEXT, "<|end_of_text|>")
    # The tokenizer.json adds BOS (its post-processor), and llama.cpp does the same from add_bos_token.
    assert _tokenize(llama, text, add_bos=True) == llama3_style_tokenizer.encode(text).ids


def test_kiln_tokenizer_in_llama_cpp(tmp_path):
    """kiln's BPE (gpt4 pattern, no BOS) as llama-bpe: same ids, no BOS although llama-bpe's default adds one,
    and the one pinned difference at a trailing newline + spaces (see kiln.interop.gguf_vocab)."""
    from kiln.tokenizer.bpe_train import train_bpe
    from kiln.tokenizer.hf_export import to_hf_json

    kiln_tok = train_bpe([*CORPUS, *["trailing\n  "] * 40], vocab_size=400, pattern="gpt4")
    model = _llama(kiln_tok.vocab_size)
    path = write_gguf(model.config.to_dict(), model.state_dict(), to_hf_json(kiln_tok), tmp_path / "m.gguf")
    for text in (SAMPLE, "a\n\n b\r\n", "ok\n  x"):
        assert _tokenize(path, text, add_bos=True) == kiln_tok.encode(text, allowed_special="all"), text
    nl, two_spaces = kiln_tok.encode("\n"), kiln_tok.encode("  ")
    assert _tokenize(path, "ok\n  ") == kiln_tok.encode("ok") + nl + two_spaces != kiln_tok.encode("ok\n  ")


@pytest.mark.shared
def test_real_gpt2_vocabulary_in_llama_cpp(shared_data, tmp_path):
    import tokenizers
    from tokenizers import decoders, models, pre_tokenizers

    folder = shared_data / "tokenizers" / "gpt2"
    tok = tokenizers.Tokenizer(models.BPE.from_file(str(folder / "encoder.json"), str(folder / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([ENDOFTEXT])
    model = _gpt2(50257, eot=50256)
    path = write_gguf(model.config.to_dict(), model.state_dict(), _tj(tok), tmp_path / "m.gguf", dtype="f16")
    for text in (SAMPLE, "a\n\n b  \n", "   x", "don't STOP 1234567"):
        assert _tokenize(path, text) == tok.encode(text).ids, text


@pytest.mark.parametrize("pattern", ["gpt2", "o200k"])
def test_kiln_tokenizer_other_patterns_in_llama_cpp(pattern, tmp_path):
    from kiln.tokenizer.bpe_train import train_bpe
    from kiln.tokenizer.hf_export import to_hf_json

    kiln_tok = train_bpe(CORPUS, vocab_size=400, pattern=pattern)
    model = _llama(kiln_tok.vocab_size)
    path = write_gguf(model.config.to_dict(), model.state_dict(), to_hf_json(kiln_tok), tmp_path / "m.gguf")
    for text in (SAMPLE, "a\n\n b\r\n  ", "CamelCase HTTPServer x  y\t\tz"):
        assert _tokenize(path, text) == kiln_tok.encode(text, allowed_special="all"), text
