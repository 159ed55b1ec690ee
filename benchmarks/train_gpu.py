"""MFU of kiln's trainer on one GPU: the gpt2 preset (124M), bf16 autocast, torch.compile, fused AdamW.

    python benchmarks/train_gpu.py [--steps 60] [--batch-size 16] [--no-compile] [--no-reference]
    python benchmarks/train_gpu.py --device cpu --preset tiny --steps 3 --no-compile   # smoke test, no GPU
    python benchmarks/train_gpu.py --no-reference --vocab-multiple-of 128 --loss-chunk-tokens 8192  # issue 21 options

Data are random tokens in kiln's shard format with a vocabulary of GPT-2's size (a character tokenizer over
50,257 code points stands in for the BPE one: throughput does not depend on what the ids mean). MFU =
tokens/s x model FLOPs per token (6N + 12·L·H·Q·T) / the GPU's dense bf16 peak (989 TFLOP/s on an H100 SXM).
Tokens/s excludes the first (compiling) step and evaluation. The same run trains the same shape on the same
random tokens with a plain nanoGPT-style loop (benchmarks/reference_loop.py) and prints both, with the ratio.
The aims (issue 21): >= 1.1x the nanoGPT-style loop and MFU >= 50% on an H100/H200.
"""

from __future__ import annotations

import argparse
import sys
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_loop import run_reference

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
    ap.add_argument("--no-reference", action="store_true", help="skip the nanoGPT-style loop")
    ap.add_argument("--preset", default="gpt2", help="model shape (a small one smoke-tests the script on CPU)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--vocab-multiple-of", type=int, default=1, help="pad the vocabulary (50257 -> 50304 with 128)")
    ap.add_argument("--loss-chunk-tokens", type=int, default=0, help="chunked LM head + cross-entropy (0 = off)")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU (or --device cpu --preset tiny to smoke-test it)")
    device = torch.device(args.device)
    model_cfg = preset(
        args.preset,
        vocab_size=VOCAB,
        vocab_multiple_of=args.vocab_multiple_of,
        loss_chunk_tokens=args.loss_chunk_tokens,
    )
    compile_ = not args.no_compile
    tokens_needed = (args.steps + 12) * args.batch_size * model_cfg.block_size + 1
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "shards"
        make_shards(data, tokens_needed)
        cfg = TrainConfig(
            data=str(data),
            out_dir=Path(tmp) / "run",
            preset=args.preset,
            model=model_cfg,
            batch_size=args.batch_size,
            max_steps=args.steps,
            lr=6e-4,
            warmup_steps=10,
            eval_interval=10**9,
            eval_batches=1,
            log_interval=10,
            precision="bf16",
            compile=compile_,
            sample_tokens=0,
            keep_last=1,
            device=args.device,
        )
        summary = train(cfg)
        ids = np.random.default_rng(0).integers(0, VOCAB, tokens_needed).astype(np.uint16)
    flops = build(model_cfg, device="meta").flops_per_token(model_cfg.block_size)
    peak = peak_tflops(device, "bf16")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{name}, torch {torch.__version__}")
    print(f"{args.preset} bf16, compile={compile_}, batch {args.batch_size} x {model_cfg.block_size}, vocab rows "
          f"{model_cfg.padded_vocab_size}, loss_chunk_tokens {model_cfg.loss_chunk_tokens}")  # fmt: skip
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (kiln trainer)")
    rows = [("kiln trainer", summary["tokens_per_s"])]
    if not args.no_reference:
        # The same shape, data and batch through a plain nanoGPT-style loop (benchmarks/reference_loop.py, no
        # kiln code): learned positions, tied head, no biases, SDPA, bf16 autocast, compile, fused AdamW. kiln's
        # gpt2 preset has biases (GPT-2's), so its FLOPs per token are the same to 0.1% and counted alike.
        ref = run_reference(
            ids,
            VOCAB,
            steps=args.steps,
            warmup_steps=10,
            batch_size=args.batch_size,
            block_size=model_cfg.block_size,
            n_layer=model_cfg.n_layer,
            n_head=model_cfg.n_head,
            n_embd=model_cfg.n_embd,
            device=args.device,
            bf16=True,
            compile=compile_,
        )
        rows.append(("nanoGPT-style loop", ref["tokens_per_s"]))
    for label, tok_s in rows:
        mfu = f"  MFU {tok_s * flops / (peak * 1e12):.1%} of {peak:.0f} TFLOP/s" if peak else ""
        print(f"{label:<20} {tok_s:>12,.0f} tokens/s  {tok_s * flops / 1e12:7.1f} model TFLOP/s{mfu}")
    if len(rows) == 2:
        print(f"kiln / nanoGPT-style: {rows[0][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()
