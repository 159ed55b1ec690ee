"""GPU checks (issue 21), run by benchmarks/gpu.sh on a CUDA machine and skipped without one: bf16 training
tracks fp32, compiled equals eager, flash attention equals the math kernel, and decoding on the GPU picks the
CPU's tokens. Each builds tiny models so the file runs in well under a minute on one GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kiln.generate import SamplingParams, generate_batch
from kiln.model import GPT, preset
from kiln.tokenize.shards import write_shard
from kiln.tokenizer import CharTokenizer
from kiln.train.config import TrainConfig
from kiln.train.trainer import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu.sh runs these)"),
]

VOCAB = 96


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(preset("tiny", vocab_size=VOCAB, **kw)).eval()


def shards(directory: Path) -> Path:
    """A learnable corpus (a repeating pattern with noise) as kiln token shards."""
    rng = np.random.default_rng(0)
    pattern = np.tile(np.arange(VOCAB), 400)
    noise = rng.integers(0, VOCAB, pattern.size)
    ids = np.where(rng.random(pattern.size) < 0.1, noise, pattern)
    CharTokenizer.train("".join(chr(0x100 + i) for i in range(VOCAB))).save(directory / "tokenizer")
    write_shard(directory / "train.bin", ids, vocab_size=VOCAB)
    write_shard(directory / "val.bin", ids[: 1 << 14], vocab_size=VOCAB)
    return directory


def run(tmp_path: Path, precision: str, compile_: bool = False) -> dict:
    data = shards(tmp_path / "data") if not (tmp_path / "data").exists() else tmp_path / "data"
    cfg = TrainConfig(
        data=str(data),
        out_dir=tmp_path / f"run-{precision}-{compile_}",
        preset="tiny",
        model=preset("tiny", vocab_size=VOCAB),
        batch_size=8,
        max_steps=60,
        lr=3e-3,
        warmup_steps=5,
        eval_interval=60,
        eval_batches=4,
        log_interval=10,
        precision=precision,
        compile=compile_,
        sample_tokens=0,
        keep_last=1,
        device="cuda",
        seed=0,
    )
    return train(cfg, log=lambda *a, **k: None)


def test_bf16_training_tracks_fp32(tmp_path: Path):
    fp32 = run(tmp_path, "fp32")
    bf16 = run(tmp_path, "bf16")
    assert bf16["precision"] == "bf16"
    assert fp32["val_loss"] < np.log(VOCAB) * 0.7, "the tiny model should learn the pattern"
    assert abs(bf16["val_loss"] - fp32["val_loss"]) <= 0.05 * fp32["val_loss"]


def test_compiled_training_matches_eager(tmp_path: Path):
    eager = run(tmp_path, "bf16")
    compiled = run(tmp_path, "bf16", compile_=True)
    assert abs(compiled["val_loss"] - eager["val_loss"]) <= 0.05 * eager["val_loss"]


def test_compiled_forward_equals_eager():
    torch.backends.cuda.matmul.allow_tf32 = False
    model = tiny(pos_encoding="rope").cuda()
    idx = torch.randint(0, VOCAB, (4, 64), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    with torch.no_grad():
        eager = model(idx, all_logits=True)[0]
        compiled = torch.compile(model)(idx, all_logits=True)[0]
    assert torch.allclose(compiled, eager, atol=1e-4, rtol=1e-4)


def test_flash_attention_equals_the_math_kernel_in_bf16():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator("cuda").manual_seed(2)
    q, k, v = (torch.randn(2, 8, 256, 64, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        flash = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    with sdpa_kernel(SDPBackend.MATH):
        math = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert (flash.float() - math).abs().max() < 2e-2


def test_gpu_decoding_picks_the_cpu_tokens():
    torch.backends.cuda.matmul.allow_tf32 = False
    cpu = tiny(pos_encoding="rope", n_kv_head=2)
    gpu = tiny(pos_encoding="rope", n_kv_head=2).cuda()
    prompts = [[1, 2, 3, 4, 5], [7, 8, 9]]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16)
    want = [c.tokens for c in generate_batch(cpu, prompts, greedy)]
    got = [c.tokens for c in generate_batch(gpu, prompts, greedy)]
    assert got == want
