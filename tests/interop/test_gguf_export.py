"""GGUF export (kiln.interop.gguf_export) against the engines that read GGUF.

References, all independent of the writer: gguf's own reader (names, shapes, metadata), transformers' GGUF
loader (it dequantizes and undoes llama.cpp's q/k permutation with its own code) compared with the original
transformers model, and the original `tokenizers` tokenizer for ids. For the lossy types the exported logits
are checked twice: equal (to float32 noise) to the original model with its weights rounded the way the format
rounds them (q8_0 by an independent re-implementation of ggml's reference quantizer), and within a stated
bound of the unrounded model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from tokenizers import Regex, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

from kiln.interop.gguf_check import check_gguf, read_gguf  # noqa: E402
from kiln.interop.gguf_errors import GGUFExportError  # noqa: E402
from kiln.interop.gguf_export import write_gguf  # noqa: E402
from kiln.interop.gguf_tensors import permute  # noqa: E402
from kiln.interop.gguf_vocab import _LLAMA3  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
transformers.logging.set_verbosity_error()

SAMPLE = (
    "Hello, world! Grüße aus Köln — 日本語のテキスト, emoji 🦙🔥👩‍👩‍👧, Ελληνικά, العربية, "
    "tabs\tand  spaces\n\nnew lines 1234567 don't STOP <|endoftext|> the end."
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog. Grüße aus Köln! 日本語のテキストです。 🦙🔥",
    "Ελληνικά και العربية, tabs\tand  spaces\n\nnumbers 1234567 890, don't won't I'll we've.",
] * 40
ENDOFTEXT = "<|endoftext|>"

# Bounds on max |logit difference| against the unrounded model, for these tiny random models (|logits| < ~1.5).
TOLERANCE = {"f32": 1e-5, "f16": 2e-3, "bf16": 2e-2, "q8_0": 3e-2}


# ---------------------------------------------------------------- tokenizers


def _train(pre_tokenizer, specials: list[str], vocab_size: int = 420) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


@pytest.fixture(scope="module")
def gpt2_style_tokenizer() -> tokenizers.Tokenizer:
    """GPT-2's form: the split regex is implicit in the ByteLevel pre-tokenizer."""
    return _train(pre_tokenizers.ByteLevel(add_prefix_space=False), [ENDOFTEXT])


@pytest.fixture(scope="module")
def llama3_style_tokenizer() -> tokenizers.Tokenizer:
    """Llama 3's form: Split(regex) then ByteLevel without its own regex, BOS added by the post-processor."""
    split = pre_tokenizers.Split(Regex(_LLAMA3), behavior="isolated")
    tok = _train(
        pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        ["<|begin_of_text|>", "<|end_of_text|>"],
    )
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)]
    )
    return tok


LLAMA3_TOKENIZER_CONFIG = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}


def _tj(tok: tokenizers.Tokenizer) -> dict:
    return json.loads(tok.to_str())


# ---------------------------------------------------------------- models


def _gpt2(vocab_size: int, *, tied: bool = True, seed: int = 0, eot: int = 0):
    torch.manual_seed(seed)
    # n_positions stays 1024: transformers' GGUF loader maps gpt2.context_length to n_ctx and never sets
    # n_positions, so any other size fails to load there (llama.cpp reads it fine).
    cfg = transformers.GPT2Config(
        vocab_size=vocab_size,
        n_positions=1024,
        n_embd=64,
        n_layer=2,
        n_head=4,
        tie_word_embeddings=tied,
        bos_token_id=eot,
        eos_token_id=eot,
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


def _llama(vocab_size: int, *, n_kv: int = 2, tied: bool = False, seed: int = 0, **extra):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=n_kv,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
        rope_theta=50000.0,
        **extra,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:  # away from 1, so a norm written to the wrong place would show
                p.uniform_(0.5, 1.5)
            if "q_proj" in name or "k_proj" in name:  # sharp attention, so RoPE's pairing of dims matters
                p.mul_(6.0)
    return model


def _export(model, tokenizer_json: dict, tmp_path: Path, dtype: str = "f32", **kw) -> Path:
    return write_gguf(
        model.config.to_dict(), model.state_dict(), tokenizer_json, tmp_path / "m.gguf", dtype=dtype, **kw
    )


def _load(path: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def _q8_0_reference(w: torch.Tensor) -> torch.Tensor:
    """ggml's quantize_row_q8_0_ref then dequantize: blocks of 32 along a row, d = amax/127 (stored as f16),
    q = roundf(x / d) (half away from zero). Written from the C reference, not from gguf-py."""
    x = w.detach().double().numpy().reshape(-1, 32)
    d = np.abs(x).max(axis=1, keepdims=True).astype(np.float32) / np.float32(127)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    q = np.trunc(x.astype(np.float32) * inv + np.copysign(np.float32(0.5), x)).clip(-127, 127)
    return torch.from_numpy((q * d.astype(np.float16).astype(np.float32)).reshape(w.shape)).to(w.dtype)


def _round_like_gguf(model, dtype: str):
    """A copy of `model` whose weights are rounded as the GGUF type rounds them: every 2-D weight except GPT-2's
    position table (llama.cpp keeps it F32); GPT-2's Conv1D weights are rounded in their (out, in) GGUF rows."""
    import copy

    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in rounded.named_parameters():
            if p.ndim != 2 or "wpe" in name or dtype == "f32":
                continue
            conv1d = any(k in name for k in ("c_attn", "c_proj", "c_fc"))
            w = p.T if conv1d else p
            if dtype == "q8_0":
                w = _q8_0_reference(w)
            else:
                w = w.to(torch.float16 if dtype == "f16" else torch.bfloat16).float()
            p.copy_(w.T if conv1d else w)
    return rounded


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "q8_0"])
def test_gpt2_logits_through_transformers_gguf_loader(dtype, gpt2_style_tokenizer, tmp_path):
    tok = gpt2_style_tokenizer
    model = _gpt2(tok.get_vocab_size())
    path = _export(model, _tj(tok), tmp_path, dtype)
    ids = tok.encode(SAMPLE).ids[:40]
    got = _logits(_load(path), ids)
    assert (got - _logits(_round_like_gguf(model, dtype), ids)).abs().max() < 2e-5
    assert (got - _logits(model, ids)).abs().max() < TOLERANCE[dtype]


@pytest.mark.parametrize(
    ("n_kv", "tied", "dtype"),
    [(2, False, "f32"), (4, True, "f32"), (1, False, "f32"), (2, False, "f16"), (2, True, "bf16"), (2, False, "q8_0")],
    ids=["gqa-untied-f32", "mha-tied-f32", "mqa-untied-f32", "gqa-f16", "gqa-tied-bf16", "gqa-q8_0"],
)
def test_llama_logits_through_transformers_gguf_loader(n_kv, tied, dtype, llama3_style_tokenizer, tmp_path):
    tok = llama3_style_tokenizer
    model = _llama(tok.get_vocab_size(), n_kv=n_kv, tied=tied)
    path = _export(model, _tj(tok), tmp_path, dtype, tokenizer_config=LLAMA3_TOKENIZER_CONFIG)
    loaded = _load(path)
    assert loaded.config.tie_word_embeddings == tied
    assert loaded.config.num_key_value_heads == n_kv
    assert loaded.config.rope_parameters["rope_theta"] == 50000.0
    ids = tok.encode(SAMPLE).ids[:40]
    got = _logits(loaded, ids)
    assert (got - _logits(_round_like_gguf(model, dtype), ids)).abs().max() < 2e-5
    assert (got - _logits(model, ids)).abs().max() < TOLERANCE[dtype]


def test_gpt2_file_has_llama_cpp_names_shapes_types_and_keys(gpt2_style_tokenizer, tmp_path):
    tok = gpt2_style_tokenizer
    model = _gpt2(tok.get_vocab_size(), tied=False)
    s = check_gguf(_export(model, _tj(tok), tmp_path, "q8_0"))
    n_vocab = tok.get_vocab_size()
    assert s.architecture == "gpt2"
    expected_keys = {
        "gpt2.context_length": 1024,
        "gpt2.embedding_length": 64,
        "gpt2.block_count": 2,
        "gpt2.feed_forward_length": 256,
        "gpt2.attention.head_count": 4,
        "gpt2.vocab_size": n_vocab,
        "general.file_type": 7,  # LLAMA_FTYPE_MOSTLY_Q8_0
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.add_bos_token": False,
    }
    assert {k: s.metadata[k] for k in expected_keys} == expected_keys
    assert s.metadata["gpt2.attention.layer_norm_epsilon"] == pytest.approx(1e-5)
    assert len(s.metadata["tokenizer.ggml.tokens"]) == n_vocab
    assert s.metadata["tokenizer.ggml.merges"][0] == " ".join(_tj(tok)["model"]["merges"][0])
    eot = tok.token_to_id(ENDOFTEXT)
    assert s.metadata["tokenizer.ggml.token_type"][eot] == 3  # CONTROL
    assert s.metadata["tokenizer.ggml.token_type"][eot + 1] == 1  # NORMAL
    expected = {
        "token_embd.weight": ((n_vocab, 64), "Q8_0"),
        "position_embd.weight": ((1024, 64), "F32"),
        "output.weight": ((n_vocab, 64), "Q8_0"),
        "output_norm.weight": ((64,), "F32"),
        "output_norm.bias": ((64,), "F32"),
    }
    for i in range(2):
        expected |= {
            f"blk.{i}.attn_norm.weight": ((64,), "F32"),
            f"blk.{i}.attn_norm.bias": ((64,), "F32"),
            f"blk.{i}.attn_qkv.weight": ((192, 64), "Q8_0"),
            f"blk.{i}.attn_qkv.bias": ((192,), "F32"),
            f"blk.{i}.attn_output.weight": ((64, 64), "Q8_0"),
            f"blk.{i}.attn_output.bias": ((64,), "F32"),
            f"blk.{i}.ffn_norm.weight": ((64,), "F32"),
            f"blk.{i}.ffn_norm.bias": ((64,), "F32"),
            f"blk.{i}.ffn_up.weight": ((256, 64), "Q8_0"),
            f"blk.{i}.ffn_up.bias": ((256,), "F32"),
            f"blk.{i}.ffn_down.weight": ((64, 256), "Q8_0"),
            f"blk.{i}.ffn_down.bias": ((64,), "F32"),
        }
    assert s.tensors == expected


def test_llama_file_has_llama_cpp_names_and_keys(llama3_style_tokenizer, tmp_path):
    tok = llama3_style_tokenizer
    model = _llama(tok.get_vocab_size() + 7, n_kv=2, tied=True)  # a padded embedding, as kiln rounds vocab sizes
    s = check_gguf(_export(model, _tj(tok), tmp_path, "f16", tokenizer_config=LLAMA3_TOKENIZER_CONFIG))
    assert s.architecture == "llama"
    want = {
        "llama.context_length": 256,
        "llama.embedding_length": 64,
        "llama.block_count": 2,
        "llama.feed_forward_length": 96,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.rope.dimension_count": 16,
        "llama.rope.freq_base": 50000.0,
        "llama.vocab_size": tok.get_vocab_size() + 7,
        "tokenizer.ggml.pre": "llama-bpe",
        "tokenizer.ggml.bos_token_id": tok.token_to_id("<|begin_of_text|>"),
        "tokenizer.ggml.eos_token_id": tok.token_to_id("<|end_of_text|>"),
        "tokenizer.ggml.add_bos_token": True,  # from the TemplateProcessing post-processor
    }
    assert {k: s.metadata[k] for k in want} == want
    assert s.metadata["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    tokens, types = s.metadata["tokenizer.ggml.tokens"], s.metadata["tokenizer.ggml.token_type"]
    assert tokens[-1] == f"[PAD{len(tokens) - 1}]" and types[-1] == 5  # UNUSED padding rows
    assert "output.weight" not in s.tensors  # tied: llama.cpp reuses token_embd
    assert s.tensors["blk.1.attn_k.weight"] == ((32, 64), "F16")
    assert s.tensors["blk.1.ffn_gate.weight"] == ((96, 64), "F16")
    assert s.tensors["blk.1.ffn_norm.weight"] == ((64,), "F32")


def test_q8_0_falls_back_to_f16_where_rows_are_not_whole_blocks(llama3_style_tokenizer, tmp_path):
    """Like llama.cpp's converter: a q8_0 block is 32 values of one row, so a 48-wide row cannot be q8_0."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=llama3_style_tokenizer.get_vocab_size(),
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(cfg)
    path = write_gguf(cfg.to_dict(), model.state_dict(), _tj(llama3_style_tokenizer), tmp_path / "m.gguf", dtype="q8_0")
    types = {name: kind for name, (_, kind) in read_gguf(path).tensors.items()}
    assert types["blk.0.attn_q.weight"] == types["blk.0.ffn_up.weight"] == "F16"  # rows of 48
    assert types["blk.0.ffn_down.weight"] == "Q8_0"  # rows of 64
    assert types["blk.0.attn_norm.weight"] == "F32"


def test_q_k_rows_are_interleaved_per_head_as_ggml_rope_expects():
    # One head of dim 8: HF pairs row j with j+4 (rotate-half); ggml pairs rows 2j and 2j+1.
    rows = torch.arange(8.0).unsqueeze(1)
    assert permute(rows, n_head=1).squeeze(1).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    # transformers' GGUF loader inverts it (its own code): the round trip is the identity, for q and GQA k.
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = torch.randn(4 * 16, 64)
    back = LlamaTensorProcessor({"num_attention_heads": 4, "num_key_value_heads": 4})._reverse_permute_weights
    assert np.array_equal(back(permute(w, 4).numpy(), 4, 4), w.numpy())
    k = torch.randn(2 * 16, 64)
    assert np.array_equal(back(permute(k, 2).numpy(), 4, 2), k.numpy())


# ---------------------------------------------------------------- tokenizer ids


def _gguf_tokenizer(path: Path):
    return transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


@pytest.mark.parametrize("style", ["gpt2_style_tokenizer", "llama3_style_tokenizer"])
def test_tokenizer_ids_identical_through_gguf(style, request, tmp_path):
    tok = request.getfixturevalue(style)
    model = _gpt2(tok.get_vocab_size()) if style.startswith("gpt2") else _llama(tok.get_vocab_size())
    config = LLAMA3_TOKENIZER_CONFIG if style.startswith("llama3") else None
    loaded = _gguf_tokenizer(_export(model, _tj(tok), tmp_path, tokenizer_config=config))
    specials = "".join(t.content for t in tok.get_added_tokens_decoder().values())
    # SAMPLE's own "<|endoftext|>" is left out for the llama-3 style vocabulary, which lacks it: transformers'
    # GGUF tokenizer (GPT2Tokenizer) then adds it as an extra id of its own, which llama.cpp would not.
    text_base = SAMPLE if ENDOFTEXT in specials else SAMPLE.replace(ENDOFTEXT, "")
    for text in (text_base, f"{specials}x{specials}", " leading space", "ä"):
        assert loaded(text)["input_ids"] == tok.encode(text).ids, text
        assert loaded.decode(tok.encode(text).ids, skip_special_tokens=False) == tok.decode(
            tok.encode(text).ids, skip_special_tokens=False
        )


def test_kiln_tokenizer_exports_as_llama_bpe(tmp_path):
    """kiln's own BPE (gpt4 pattern) through its tokenizer.json export: the path `kiln export gguf` takes."""
    from kiln.tokenizer.bpe_train import train_bpe
    from kiln.tokenizer.hf_export import to_hf_json

    # Documents that end in "\n  " make that chunk a token, so the known difference below shows in the ids.
    kiln_tok = train_bpe([*CORPUS, *["trailing\n  "] * 40], vocab_size=400, pattern="gpt4")
    tj = to_hf_json(kiln_tok)
    path = _export(_llama(kiln_tok.vocab_size), tj, tmp_path, tokenizer_config={"eos_token": ENDOFTEXT})
    assert read_gguf(path).metadata["tokenizer.ggml.pre"] == "llama-bpe"
    loaded = _gguf_tokenizer(path)
    for text in (SAMPLE, "a\n\n b\r\n", "x  y\t\tz"):
        assert loaded(text)["input_ids"] == kiln_tok.encode(text, allowed_special="all"), text
    # The one known difference (see gguf_vocab's docstring): tiktoken's `\s++$` keeps trailing "\n " whole.
    assert kiln_tok.encode("ok\n  ") != loaded("ok\n  ")["input_ids"]
    assert kiln_tok.encode("ok\n  x") == loaded("ok\n  x")["input_ids"]


@pytest.mark.parametrize(("pattern", "pre"), [("gpt2", "gpt-2"), ("o200k", "gpt-4o")])
def test_kiln_tokenizer_other_patterns(pattern, pre, tmp_path):
    from kiln.tokenizer.bpe_train import train_bpe
    from kiln.tokenizer.hf_export import to_hf_json

    kiln_tok = train_bpe(CORPUS, vocab_size=400, pattern=pattern)
    path = _export(_llama(kiln_tok.vocab_size), to_hf_json(kiln_tok), tmp_path)
    assert read_gguf(path).metadata["tokenizer.ggml.pre"] == pre
    loaded = _gguf_tokenizer(path)
    for text in (SAMPLE, "a\n\n b\r\n  ", "CamelCase HTTPServer x  y\t\tz"):
        assert loaded(text)["input_ids"] == kiln_tok.encode(text, allowed_special="all"), text


@pytest.mark.shared
def test_real_gpt2_vocabulary_round_trips(shared_data, tmp_path):
    folder = shared_data / "tokenizers" / "gpt2"
    if not (folder / "encoder.json").is_file():
        pytest.skip(f"needs {folder}/encoder.json and vocab.bpe")
    # GPT-2's tokenizer as its tokenizer.json has it: byte-level BPE with the regex inside ByteLevel.
    tok = tokenizers.Tokenizer(models.BPE.from_file(str(folder / "encoder.json"), str(folder / "vocab.bpe")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([ENDOFTEXT])
    model = _gpt2(50257, eot=50256)
    config = {"bos_token": ENDOFTEXT, "eos_token": ENDOFTEXT}
    path = _export(model, _tj(tok), tmp_path, "f16", tokenizer_config=config)
    loaded = _gguf_tokenizer(path)  # (gguf's reader takes seconds over 100k strings: read the file once)
    assert loaded.eos_token_id == 50256 and len(loaded) == 50257
    assert tok.encode("Hello world").ids == [15496, 995]  # OpenAI's ids, so the reference is the real GPT-2
    for text in (SAMPLE, "a\n\n b  \n", "   x"):
        assert loaded(text)["input_ids"] == tok.encode(text).ids, text
    assert 50256 in loaded(SAMPLE)["input_ids"]  # <|endoftext|> in text stays one special token


# ---------------------------------------------------------------- mixture of experts


def test_mixtral_experts_stacked_from_either_spelling(llama3_style_tokenizer, tmp_path):
    """transformers 5 keeps experts fused in memory and saves them per expert; both must give one file."""
    from safetensors.torch import load_file

    tok = llama3_style_tokenizer
    torch.manual_seed(0)
    cfg = transformers.MixtralConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=256,
    )
    model = transformers.MixtralForCausalLM(cfg).eval()
    model.save_pretrained(tmp_path / "hf")
    saved = load_file(tmp_path / "hf" / "model.safetensors")
    assert "model.layers.0.block_sparse_moe.experts.3.w2.weight" in saved
    a = write_gguf(cfg.to_dict(), model.state_dict(), _tj(tok), tmp_path / "fused.gguf", dtype="f32")
    b = write_gguf(cfg.to_dict(), saved, _tj(tok), tmp_path / "saved.gguf", dtype="f32")
    assert a.read_bytes() == b.read_bytes()
    s = check_gguf(a)
    assert (s.metadata["llama.expert_count"], s.metadata["llama.expert_used_count"]) == (4, 2)
    assert s.tensors["blk.0.ffn_gate_inp.weight"] == ((4, 64), "F32")
    assert s.tensors["blk.0.ffn_gate_exps.weight"] == ((4, 96, 64), "F32")
    assert s.tensors["blk.0.ffn_up_exps.weight"] == ((4, 96, 64), "F32")
    assert s.tensors["blk.0.ffn_down_exps.weight"] == ((4, 64, 96), "F32")
    gate_up = model.state_dict()["model.layers.1.mlp.experts.gate_up_proj"]
    data = {t.name: t.data for t in __import__("gguf").GGUFReader(a).tensors}
    assert np.array_equal(data["blk.1.ffn_up_exps.weight"], gate_up[:, 96:].numpy())


# ---------------------------------------------------------------- refusals and atomicity


def test_unknown_split_regex_is_refused_by_name(tmp_path):
    tok = _train(
        pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(r"\p{L}+|\s+|."), "isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        ),
        [ENDOFTEXT],
        vocab_size=300,
    )
    with pytest.raises(GGUFExportError, match=r"split regex .*\\\\p\{L\}\+.* is not one llama.cpp implements"):
        _export(_gpt2(tok.get_vocab_size()), _tj(tok), tmp_path)
    assert not (tmp_path / "m.gguf").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c, sd: c.update(model_type="bert", architectures=["BertModel"]), "model_type 'bert'"),
        (lambda c, sd: c.update(hidden_act="gelu"), "hidden_act 'gelu'"),
        (lambda c, sd: c.update(sliding_window=64), "sliding_window=64"),
        (lambda c, sd: c.update(rope_parameters={"rope_type": "yarn", "factor": 2.0}), "rope_type 'yarn'"),
        (lambda c, sd: sd.pop("model.layers.1.self_attn.v_proj.weight"), "'model.layers.1.self_attn.v_proj.weight'"),
        (lambda c, sd: sd.update(extra=torch.zeros(2)), "no place for: extra"),
        (lambda c, sd: c.update(vocab_size=50), "vocab_size is 50"),
        (lambda c, sd: c.update(tie_word_embeddings=True), "lm_head.weight differs from the embedding"),
    ],
    ids=["arch", "activation", "sliding-window", "rope-scaling", "missing-tensor", "extra-tensor", "vocab", "tied"],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(change, message, llama3_style_tokenizer, tmp_path):
    model = _llama(llama3_style_tokenizer.get_vocab_size())
    config, sd = model.config.to_dict(), dict(model.state_dict())
    change(config, sd)
    with pytest.raises(GGUFExportError, match=message):
        write_gguf(config, sd, _tj(llama3_style_tokenizer), tmp_path / "m.gguf", dtype="f16")
    assert os.listdir(tmp_path) == []  # no file and no temporary left behind


def test_bad_dtype_and_exact_gelu_are_refused(gpt2_style_tokenizer, tmp_path):
    model = _gpt2(gpt2_style_tokenizer.get_vocab_size())
    with pytest.raises(GGUFExportError, match="dtype 'q4_0'"):
        _export(model, _tj(gpt2_style_tokenizer), tmp_path, "q4_0")
    config = model.config.to_dict() | {"activation_function": "gelu"}
    with pytest.raises(GGUFExportError, match="activation_function 'gelu'"):
        write_gguf(config, model.state_dict(), _tj(gpt2_style_tokenizer), tmp_path / "m.gguf")


def test_corrupted_file_is_a_clear_error(gpt2_style_tokenizer, tmp_path):
    path = _export(_gpt2(gpt2_style_tokenizer.get_vocab_size()), _tj(gpt2_style_tokenizer), tmp_path, "f16")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(GGUFExportError, match="not a readable GGUF"):
        check_gguf(path)
