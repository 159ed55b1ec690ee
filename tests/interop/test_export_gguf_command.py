"""`kiln export gguf`: a kiln checkpoint goes through the Hugging Face mapping and llama.cpp's writer into one file
that gguf's reader accepts and transformers runs (logits within each storage type's rounding)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

from interop_support import LLAMA, make_checkpoint  # noqa: E402

from helpers import run_cli  # noqa: E402
from kiln.interop.gguf_check import check_gguf  # noqa: E402


@pytest.mark.parametrize(("dtype", "tol"), [("f32", 1e-5), ("f16", 5e-3), ("q8_0", 8e-2)])
def test_a_kiln_checkpoint_exports_to_gguf_that_transformers_runs(tmp_path, bpe_tokenizer, dtype, tol):
    ckpt, model = make_checkpoint(tmp_path, bpe_tokenizer, **{**LLAMA, "n_kv_head": 2})
    out = tmp_path / "model.gguf"
    rc, text, err = run_cli(["export", "gguf", str(ckpt), "--out", str(out), f"dtype={dtype}"])
    assert rc == 0, err
    assert "llama" in text and out.is_file()
    summary = check_gguf(out)
    assert summary.architecture == "llama" and summary.key("block_count") == model.config.n_layer
    assert summary.key("attention.head_count_kv") == 2
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=out.name, dtype=torch.float32).eval()
    ids = torch.arange(1, 40)[None]
    with torch.no_grad():
        ours, _ = model(ids, all_logits=True)
        # Relative to the logits' scale: each storage type rounds the weights by a fraction of their size.
        assert (ours - hf(ids).logits).abs().max().item() <= tol * ours.abs().max().item()


def test_gguf_refusals_and_existing_files_are_clear_errors(tmp_path, bpe_tokenizer):
    ckpt, _ = make_checkpoint(tmp_path, bpe_tokenizer, pos_encoding="alibi")
    rc, _, err = run_cli(["export", "gguf", str(ckpt), "--out", str(tmp_path / "a.gguf")])
    assert rc == 2 and "pos_encoding='alibi'" in err and not (tmp_path / "a.gguf").exists()
    rc, _, err = run_cli(["export", "gguf", str(ckpt), "--out", str(tmp_path / "a.bin")])
    assert rc == 2 and ".gguf" in err
    good, _ = make_checkpoint(tmp_path / "g", bpe_tokenizer, **LLAMA)
    (tmp_path / "b.gguf").write_bytes(b"mine")
    rc, _, err = run_cli(["export", "gguf", str(good), "--out", str(tmp_path / "b.gguf")])
    assert rc == 2 and "--overwrite" in err and (tmp_path / "b.gguf").read_bytes() == b"mine"
