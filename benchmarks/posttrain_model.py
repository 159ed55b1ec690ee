"""The model and data `benchmarks/sft.py` and `benchmarks/dpo.py` give both kiln and TRL: a random-init
Llama-shaped kiln checkpoint with a 2,048-token chat BPE trained on TinyStories, its `kiln export hf` directory
(identical weights on both sides), and the quickstart's instruction tasks (stories cut to 300 characters)."""

from __future__ import annotations

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def build_base(root: Path) -> tuple[Path, Path, list]:
    """(kiln checkpoint, HF directory, word tasks) under `root`."""
    from kiln.interop.export_hf import ExportHFConfig
    from kiln.interop.export_hf import run as export
    from kiln.model import GPT, GPTConfig
    from kiln.model.checkpoint import save_checkpoint
    from kiln.posttrain.word_task import make_tasks, read_tinystories
    from kiln.tokenizer import train_bpe

    stories = read_tinystories(ROOT / "src/kiln/assets/quickstart/tinystories.txt.gz")
    tok = train_bpe(stories[:400], vocab_size=2048, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    torch.manual_seed(0)
    cfg = GPTConfig(
        vocab_size=tok.vocab_size, block_size=256, n_layer=4, n_head=8, n_kv_head=4, n_embd=256,
        pos_encoding="rope", norm="rmsnorm", activation="swiglu", bias=False, tie_embeddings=False,
    )  # fmt: skip
    ckpt = save_checkpoint(root / "base", GPT(cfg), tok)
    export(ExportHFConfig(checkpoint=str(ckpt), out_dir=str(root / "hf")))
    return ckpt, root / "hf", make_tasks(stories, seed=0, max_chars=300)  # ~90 tokens: 2-3 fit a window
