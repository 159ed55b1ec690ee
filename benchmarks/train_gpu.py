"""MFU of kiln's trainer on one GPU: the gpt2 preset (124M), bf16 autocast, torch.compile, fused AdamW.

    python benchmarks/train_gpu.py [--steps 60] [--batch-size 16] [--no-compile]

Data are random tokens in kiln's shard format with a vocabulary of GPT-2's size (a character tokenizer over
50,257 code points stands in for the BPE one: throughput does not depend on what the ids mean). MFU =
tokens/s x model FLOPs per token (6N + 12·L·H·Q·T) / the GPU's dense bf16 peak (989 TFLOP/s on an H100 SXM).
Tokens/s excludes the first (compiling) step and evaluation. The aim for an H100 is MFU >= 45%.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from kiln.model import build, preset
from kiln.tokenize.shards import write_shard
from kiln.tokenizer import CharTokenizer
from kiln.train.config import TrainConfig
from kiln.train.metrics import peak_tflops
from kiln.train.trainer import train

VOCAB = 50257


def make_shards(directory: Path, n_tokens: int, seed: int = 0) -> None:
    chars = "".join(chr(0x100 + i) for i in range(VOCAB))
    CharTokenizer.train(chars).save(directory / "tokenizer")
    rng = np.random.default_rng(seed)
    write_shard(directory / "train.bin", rng.integers(0, VOCAB, n_tokens), vocab_size=VOCAB)
    write_shard(directory / "val.bin", rng.integers(0, VOCAB, 1 << 20), vocab_size=VOCAB)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    model_cfg = preset("gpt2", vocab_size=VOCAB)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "shards"
        make_shards(data, (args.steps + 2) * args.batch_size * model_cfg.block_size + 1)
        cfg = TrainConfig(
            data=str(data),
            out_dir=Path(tmp) / "run",
            preset="gpt2",
            model=model_cfg,
            batch_size=args.batch_size,
            max_steps=args.steps,
            lr=6e-4,
            warmup_steps=10,
            eval_interval=10**9,
            eval_batches=1,
            log_interval=10,
            precision="bf16",
            compile=not args.no_compile,
            sample_tokens=0,
            keep_last=1,
        )
        summary = train(cfg)
    device = torch.device("cuda")
    flops = build(model_cfg, device="meta").flops_per_token(model_cfg.block_size)
    peak = peak_tflops(device, "bf16")
    tok_s = summary["tokens_per_s"]
    print(f"\n{torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    print(f"gpt2 (124M) bf16, compile={not args.no_compile}, batch {args.batch_size} x {model_cfg.block_size}")
    print(f"tokens/s: {tok_s:,.0f}   model TFLOP/s: {tok_s * flops / 1e12:.1f}")
    if peak:
        print(f"MFU: {tok_s * flops / (peak * 1e12):.1%} of {peak:.0f} TFLOP/s")


if __name__ == "__main__":
    main()
