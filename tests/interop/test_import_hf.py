"""`kiln import hf`: models built and saved by transformers (GPT-2 and the Llama family) become kiln checkpoints
that compute the same logits; export -> import gives back bit-identical weights; bad sources are clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

transformers = pytest.importorskip("transformers")

from interop_support import LLAMA, UNICODE_SAMPLE, VARIANTS, make_checkpoint, randomize  # noqa: E402

from helpers import run_cli  # noqa: E402
from kiln.generate import SamplingParams, generate  # noqa: E402
from kiln.interop.export_hf import ExportHFConfig  # noqa: E402
from kiln.interop.export_hf import run as export_run  # noqa: E402
from kiln.interop.import_hf import ImportHFConfig, run  # noqa: E402
from kiln.model.checkpoint import load_checkpoint  # noqa: E402

VOCAB = 400
COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
SOURCES = {
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0
    ),
    "llama-gqa": lambda: transformers.LlamaConfig(
        **COMMON, num_key_value_heads=2, max_position_embeddings=64, rope_theta=20000.0, tie_word_embeddings=False
    ),
    "mistral": lambda: transformers.MistralConfig(
        **COMMON, num_key_value_heads=1, max_position_embeddings=64, sliding_window=16
    ),
    "qwen2": lambda: transformers.Qwen2Config(
        **COMMON, num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True
    ),
    "mixtral": lambda: transformers.MixtralConfig(
        **COMMON, num_key_value_heads=2, max_position_embeddings=64, num_local_experts=4, num_experts_per_tok=2
    ),
}


def save_hf(tmp_path: Path, name: str, tokenizer_dir: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(SOURCES[name]()).eval()
    randomize(model, seed=7)
    out = tmp_path / "hf-src"
    model.save_pretrained(out)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / f, out / f)
    return out, model


@pytest.mark.parametrize("name", list(SOURCES))
def test_an_imported_model_computes_what_transformers_computes(tmp_path, hf_tokenizer_dir, name):
    src, hf = save_hf(tmp_path, name, hf_tokenizer_dir)
    rc, _out, err = run_cli(["import", "hf", str(src), "--out", str(tmp_path / "kiln")])
    assert rc == 0, err
    model, tok, meta = load_checkpoint(tmp_path / "kiln")
    assert meta["imported_from"]["model_type"] == hf.config.model_type
    ids = torch.randint(0, VOCAB, (2, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (model(ids, all_logits=True)[0] - hf(ids).logits).abs().max().item() <= 1e-4
    hf_tok = transformers.AutoTokenizer.from_pretrained(src)
    assert tok.encode(UNICODE_SAMPLE, allowed_special="all") == hf_tok.encode(UNICODE_SAMPLE, add_special_tokens=False)
    # The imported checkpoint is an ordinary kiln checkpoint: kiln generate runs it.
    rc, _text, err = run_cli(
        ["generate", f"checkpoint={tmp_path / 'kiln'}", "prompt=the", "max_new_tokens=5", "temperature=0"]
    )
    assert rc == 0, err


def test_special_tokens_in_text_stay_text_unless_allowed(tmp_path, hf_tokenizer_dir, bpe_tokenizer):
    src, _ = save_hf(tmp_path, "llama-gqa", hf_tokenizer_dir)
    run(ImportHFConfig(source=str(src), out_dir=str(tmp_path / "kiln")))
    _, tok, _ = load_checkpoint(tmp_path / "kiln")
    hf_tok = transformers.AutoTokenizer.from_pretrained(src)
    assert tok.encode(UNICODE_SAMPLE, allowed_special="all") == hf_tok.encode(UNICODE_SAMPLE, add_special_tokens=False)
    # Ordinary encoding matches kiln's own BPE, which never turns text into a special id.
    assert tok.encode(UNICODE_SAMPLE) == bpe_tokenizer.encode(UNICODE_SAMPLE)
    assert tok.eot_id == bpe_tokenizer.special_tokens["<|endoftext|>"]
    assert tok.decode(tok.encode(UNICODE_SAMPLE)) == UNICODE_SAMPLE
    assert b"".join(tok.id_to_bytes(i) for i in tok.encode(UNICODE_SAMPLE)) == UNICODE_SAMPLE.encode()


@pytest.mark.parametrize("variant", ["gpt2-untied-relu", "llama-gqa-untied", "llama-mqa-bias", "mixtral-moe"])
def test_export_then_import_gives_back_bit_identical_weights(tmp_path, bpe_tokenizer, variant):
    ckpt, model = make_checkpoint(tmp_path, bpe_tokenizer, **VARIANTS[variant])
    export_run(ExportHFConfig(checkpoint=str(ckpt), out_dir=str(tmp_path / "hf")))
    run(ImportHFConfig(source=str(tmp_path / "hf"), out_dir=str(tmp_path / "back")))
    before, after = load_file(str(ckpt / "model.safetensors")), load_file(str(tmp_path / "back" / "model.safetensors"))
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k
    back, tok, _ = load_checkpoint(tmp_path / "back")
    assert back.config == model.config
    prompt = bpe_tokenizer.encode("a brown fox")
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16)
    assert generate(back, prompt, greedy).tokens == generate(model, prompt, greedy).tokens
    assert tok.encode(UNICODE_SAMPLE) == bpe_tokenizer.encode(UNICODE_SAMPLE)


def test_bad_sources_are_clear_errors(tmp_path, hf_tokenizer_dir):
    src, _ = save_hf(tmp_path, "llama-gqa", hf_tokenizer_dir)

    def fails(path: Path, *needles: str) -> None:
        rc, _, err = run_cli(["import", "hf", str(path), "--out", str(tmp_path / "out")])
        assert rc == 2 and "Traceback" not in err, err
        for n in needles:
            assert n in err, err
        assert not (tmp_path / "out").exists()

    cfg = json.loads((src / "config.json").read_text())
    odd = tmp_path / "odd"
    shutil.copytree(src, odd)
    (odd / "config.json").write_text(json.dumps({**cfg, "model_type": "falcon"}))
    fails(odd, "falcon", "llama")
    (odd / "config.json").write_text(json.dumps({**cfg, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}))
    fails(odd, "yarn")

    pickled = tmp_path / "pickled"
    shutil.copytree(src, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    fails(pickled, "pytorch_model.bin", "safetensors")

    missing = tmp_path / "missing"
    shutil.copytree(src, missing)
    state = load_file(str(missing / "model.safetensors"))
    del state["model.layers.1.mlp.down_proj.weight"]
    from safetensors.torch import save_file

    save_file(state, str(missing / "model.safetensors"), metadata={"format": "pt"})
    fails(missing, "model.layers.1.mlp.down_proj.weight")

    truncated = tmp_path / "truncated"
    shutil.copytree(src, truncated)
    w = truncated / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    fails(truncated, "corrupt")

    no_tok = tmp_path / "no_tok"
    shutil.copytree(src, no_tok)
    (no_tok / "tokenizer.json").unlink()
    fails(no_tok, "tokenizer.json")

    rc, _, err = run_cli(["import", "hf", str(src), "--out", str(tmp_path / "ok")])
    assert rc == 0, err
    rc, _, err = run_cli(["import", "hf", str(src), "--out", str(tmp_path / "ok")])
    assert rc == 2 and "--overwrite" in err


def test_llama_shaped_kiln_models_keep_rope_theta_and_eps(tmp_path, bpe_tokenizer):
    ckpt, _model = make_checkpoint(tmp_path, bpe_tokenizer, **LLAMA)
    export_run(ExportHFConfig(checkpoint=str(ckpt), out_dir=str(tmp_path / "hf")))
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["rope_theta"] == 5000.0 and cfg["rms_norm_eps"] == 1e-6
