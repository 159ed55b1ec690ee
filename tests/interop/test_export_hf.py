"""`kiln export hf`: every kiln architecture that maps onto a transformers class loads there with no custom code
and computes the same function (logits to 1e-4 in fp32, identical greedy generations), with the same token ids;
variants no class represents are refused by name."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from interop_support import (  # noqa: E402
    EXPECTED_CLASS,
    LLAMA,
    SHAPE,
    UNICODE_SAMPLE,
    VARIANTS,
    export,
    make_checkpoint,
)

from helpers import run_cli  # noqa: E402
from kiln.generate import SamplingParams, generate  # noqa: E402
from kiln.model import GPT, GPTConfig  # noqa: E402
from kiln.model.checkpoint import save_checkpoint  # noqa: E402
from kiln.tokenizer import ByteTokenizer, CharTokenizer, WordTokenizer  # noqa: E402


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_transformers_computes_what_kiln_computes(tmp_path, bpe_tokenizer, variant):
    ckpt, model = make_checkpoint(tmp_path, bpe_tokenizer, seed=len(variant), **VARIANTS[variant])
    out = export(ckpt, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    arch = json.loads((out / "config.json").read_text())["model_type"]
    assert type(hf).__name__ == EXPECTED_CLASS[arch]
    assert variant.startswith(arch)

    ids = torch.randint(
        0, bpe_tokenizer.vocab_size, (2, SHAPE["block_size"]), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        ours, _ = model(ids, all_logits=True)
        theirs = hf(ids).logits
    assert (ours - theirs).abs().max().item() <= 1e-4

    prompt = bpe_tokenizer.encode("the quick brown fox")
    mine = generate(model, prompt, SamplingParams(temperature=0.0, max_new_tokens=32)).tokens
    with torch.no_grad():
        hf_out = hf.generate(
            torch.tensor([prompt]),
            do_sample=False,
            max_new_tokens=32,
            min_new_tokens=32,
            eos_token_id=None,
            pad_token_id=0,
        )
    assert hf_out[0, len(prompt) :].tolist() == mine


@pytest.mark.parametrize("kind", ["bpe", "byte", "char", "word"])
def test_autotokenizer_gives_kilns_ids(tmp_path, bpe_tokenizer, kind):
    sample = UNICODE_SAMPLE
    if kind == "bpe":
        tok = bpe_tokenizer
    elif kind == "byte":
        tok = ByteTokenizer()
    elif kind == "char":
        tok = CharTokenizer.train(sample)
    else:
        tok = WordTokenizer.train([sample, "more words here"], vocab_size=60, special_tokens=["<|endoftext|>"])
    ckpt, _ = make_checkpoint(tmp_path, tok)
    out = export(ckpt, tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    allowed = {"allowed_special": "all"} if kind in ("bpe", "word") else {}
    ids = tok.encode(sample, **allowed)
    assert hf_tok.encode(sample, add_special_tokens=False) == ids
    assert hf_tok.decode(ids) == tok.decode(ids)
    if kind == "bpe":
        assert hf_tok.eos_token == "<|endoftext|>" and hf_tok.eos_token_id == tok.special_tokens["<|endoftext|>"]


def test_large_models_are_sharded_with_an_index(tmp_path, bpe_tokenizer):
    ckpt, model = make_checkpoint(tmp_path, bpe_tokenizer, **LLAMA)
    out = export(ckpt, tmp_path / "hf", max_shard_gb=0.00005)  # 50 kB shards
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and not (out / "model.safetensors").exists()
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.arange(10)[None]
    with torch.no_grad():
        assert (model(ids, all_logits=True)[0] - hf(ids).logits).abs().max().item() <= 1e-4


def test_bf16_export_halves_the_weights(tmp_path, bpe_tokenizer):
    ckpt, _ = make_checkpoint(tmp_path, bpe_tokenizer, **LLAMA)
    full = export(ckpt, tmp_path / "fp32")
    half = export(ckpt, tmp_path / "bf16", dtype="bfloat16")
    assert (half / "model.safetensors").stat().st_size < 0.55 * (full / "model.safetensors").stat().st_size
    hf = transformers.AutoModelForCausalLM.from_pretrained(half)
    assert hf.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("override", "option"),
    [
        (dict(pos_encoding="alibi"), "pos_encoding='alibi'"),
        (dict(pos_encoding="sinusoidal"), "pos_encoding='sinusoidal'"),
        (dict(norm_position="post"), "norm_position='post'"),
        (dict(attention_window=8), "attention_window=8"),
        ({**LLAMA, "norm": "layernorm"}, "norm='layernorm'"),
        ({**LLAMA, "attention_window": 8, "bias": True}, "bias=True"),
    ],
)
def test_variants_no_hf_class_computes_are_refused_by_name(tmp_path, bpe_tokenizer, override, option):
    ckpt, _ = make_checkpoint(tmp_path, bpe_tokenizer, **override)
    rc, _, err = run_cli(["export", "hf", str(ckpt), "--out", str(tmp_path / "hf")])
    assert rc == 2 and option in err and "Traceback" not in err
    assert not (tmp_path / "hf").exists()


def test_clear_errors_for_missing_tokenizer_existing_target_and_corruption(tmp_path, bpe_tokenizer):
    torch.manual_seed(0)
    bare = save_checkpoint(tmp_path / "bare", GPT(GPTConfig(vocab_size=300, **SHAPE)), None)
    rc, _, err = run_cli(["export", "hf", str(bare), "--out", str(tmp_path / "a")])
    assert rc == 2 and "tokenizer" in err

    ckpt, _ = make_checkpoint(tmp_path, bpe_tokenizer)
    target = tmp_path / "exists"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    rc, _, err = run_cli(["export", "hf", str(ckpt), "--out", str(target)])
    assert rc == 2 and "--overwrite" in err and (target / "keep.txt").read_text() == "mine"
    rc, _out, err = run_cli(["export", "hf", str(ckpt), "--out", str(target), "--overwrite"])
    assert rc == 0, err
    assert not (target / "keep.txt").exists() and (target / "config.json").exists()

    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    rc, _, err = run_cli(["export", "hf", str(ckpt), "--out", str(tmp_path / "b")])
    assert rc == 2 and "corrupt" in err and "model.safetensors" in err


def test_the_command_writes_its_resolved_config_and_generation_config(tmp_path, bpe_tokenizer):
    ckpt, _ = make_checkpoint(tmp_path, bpe_tokenizer, **LLAMA)
    rc, out, err = run_cli(["export", "hf", str(ckpt), "--out", str(tmp_path / "hf"), "dtype=float16"])
    assert rc == 0, err
    assert "LlamaForCausalLM" in out
    gen = transformers.GenerationConfig.from_pretrained(tmp_path / "hf")
    assert gen.eos_token_id == bpe_tokenizer.special_tokens["<|endoftext|>"]
    assert (tmp_path / "hf" / "kiln-export-hf.toml").exists()


def test_the_exported_chat_template_gives_the_servers_ids(tmp_path, bpe_tokenizer):
    """kiln's one ChatML definition: transformers' apply_chat_template on the export == the server's rendering."""
    from kiln.tokenizer.chat import render_chat_ids

    ckpt, _ = make_checkpoint(tmp_path, bpe_tokenizer, **LLAMA)
    out = export(ckpt, tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Ünïcödé 🙂 hello\nworld"},
        {"role": "assistant", "content": "Hi."},
        {"role": "developer", "content": "Now in French."},
        {"role": "user", "content": "again"},
    ]
    theirs = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    theirs = theirs["input_ids"] if isinstance(theirs, dict) or hasattr(theirs, "keys") else theirs
    ours = render_chat_ids(bpe_tokenizer, [(m["role"], m["content"]) for m in messages])
    assert list(theirs) == ours
    # And it survives an import: the imported tokenizer keeps the template for the next export.
    from kiln.interop.import_hf import ImportHFConfig
    from kiln.interop.import_hf import run as import_run

    import_run(ImportHFConfig(source=str(out), out_dir=str(tmp_path / "back")))
    again = export(tmp_path / "back", tmp_path / "hf2")
    assert json.loads((again / "tokenizer_config.json").read_text())["chat_template"] == hf_tok.chat_template


def test_auto_keeps_the_checkpoints_own_precision(tmp_path, bpe_tokenizer):
    from kiln.model.checkpoint import save_checkpoint

    _, model = make_checkpoint(tmp_path, bpe_tokenizer, **LLAMA)
    half = save_checkpoint(tmp_path / "bf16-ckpt", model.to(torch.bfloat16), bpe_tokenizer)
    out = export(half, tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert transformers.AutoModelForCausalLM.from_pretrained(out).dtype == torch.bfloat16


def test_a_llama3_vocabulary_speaks_llama3s_template(tmp_path):
    """A tokenizer with Llama 3's header tokens gets Llama 3's template: the server's ids, the SFT mask and the
    exported Jinja agree (transformers' apply_chat_template), and only the reply and its <|eot_id|> train."""
    from kiln.posttrain.render import render_for_training
    from kiln.tokenizer import train_bpe
    from kiln.tokenizer.chat import LLAMA3, render_chat_ids, template_for

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok = train_bpe(["Hello there, how are you? I am fine. " * 30], vocab_size=300, special_tokens=specials)
    assert template_for(tok) is LLAMA3
    messages = [("system", "Be brief."), ("user", "Hi there"), ("assistant", "Hello!"), ("user", "Again")]
    ids = render_chat_ids(tok, messages)
    assert tok.decode(ids) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAgain<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    full, trained = render_for_training(tok, messages[:3])
    assert (
        full
        == render_chat_ids(tok, messages[:2])[: len(full) - len(tok.encode("Hello!")) - 1]
        + full[len(full) - len(tok.encode("Hello!")) - 1 :]
    )
    assert tok.decode([i for i, t in zip(full, trained, strict=True) if t]) == "Hello!<|eot_id|>"

    torch.manual_seed(0)
    from kiln.model import GPT, GPTConfig
    from kiln.model.checkpoint import save_checkpoint

    model = GPT(GPTConfig(vocab_size=tok.vocab_size, **{**SHAPE, **LLAMA}))
    out = export(save_checkpoint(tmp_path / "ckpt", model, tok), tmp_path / "hf")
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    theirs = hf_tok.apply_chat_template(
        [{"role": r, "content": c} for r, c in messages], add_generation_prompt=True, tokenize=True
    )
    theirs = theirs["input_ids"] if hasattr(theirs, "keys") else theirs
    assert list(theirs) == ids
