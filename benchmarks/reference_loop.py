"""The usual reference loop: a plain-PyTorch GPT trained the way nanoGPT trains its CPU Shakespeare-char model.

kiln's trainer is compared against this. It is written from scratch in the style of nanoGPT's model.py and
train.py, with nothing from kiln, so the comparison measures kiln against the loop most people already know:

- model: learned token + position embeddings, n_layer pre-LayerNorm blocks (one fused q/k/v Linear of width
  3·C, `F.scaled_dot_product_attention(is_causal=True)`, an output projection; MLP Linear(C, 4C), exact GELU,
  Linear(4C, C)), a final LayerNorm and an LM head tied to the token embedding. No biases in Linear or
  LayerNorm (nanoGPT's `GPTConfig(bias=False)` default: a little faster, and no worse in its experiments).
  Dropout 0. Init N(0, 0.02), residual projections N(0, 0.02/sqrt(2·n_layer)).
- shape: nanoGPT's CPU recipe for Shakespeare-char: n_layer 4, n_head 4, n_embd 128, block 64, batch 12.
- loop: random windows from the token array (`torch.randint` starts), AdamW(lr 1e-3, betas (0.9, 0.99),
  weight decay 0.1 on 2-D parameters only, PyTorch's default foreach implementation), backward, clip the
  gradient norm to 1.0, step, `zero_grad(set_to_none=True)`. Constant learning rate: this is a throughput
  reference, and a schedule does not change the cost of a step.

    python benchmarks/reference_loop.py [--steps 200] [--warmup-steps 10] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

SHAKESPEARE = Path(__file__).resolve().parents[1] / "src" / "kiln" / "assets" / "tinyshakespeare.txt"


@dataclass
class RefConfig:
    vocab_size: int
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    bias: bool = False


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: RefConfig) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q = q.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        k = k.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        v = v.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class MLP(nn.Module):
    def __init__(self, cfg: RefConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: RefConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class RefGPT(nn.Module):
    def __init__(self, cfg: RefConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        _, t = idx.shape
        pos = torch.arange(t, dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        return logits, loss


def make_optimizer(
    model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.1, fused: bool = False
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings (2-D) and none on norms and biases (fused on a GPU,
    as nanoGPT does there)."""
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() yields a tied matrix once
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), fused=fused or None)


def get_batch(data: np.ndarray, batch_size: int, block_size: int) -> tuple[Tensor, Tensor]:
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([torch.from_numpy(data[i : i + block_size].astype(np.int64)) for i in ix.tolist()])
    y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + block_size].astype(np.int64)) for i in ix.tolist()])
    return x, y


def run_reference(
    train_ids: np.ndarray,
    vocab_size: int,
    *,
    steps: int,
    warmup_steps: int = 10,
    seed: int = 1337,
    batch_size: int = 12,
    block_size: int = 64,
    n_layer: int = 4,
    n_head: int = 4,
    n_embd: int = 128,
    device: str = "cpu",
    bf16: bool = False,
    compile: bool = False,
) -> dict:
    """Train `steps` steps after `warmup_steps` untimed ones.

    On CPU by default, as nanoGPT's CPU recipe; on a GPU (`device="cuda"`, `bf16=True`, `compile=True`) as
    nanoGPT's train.py / bench.py run gpt2: bf16 autocast, TF32 matmuls, torch.compile, fused AdamW, batches
    pinned and copied asynchronously. Returns {"tokens_per_s", "steps", "final_loss", "seconds"}; tokens per
    step = batch_size · block_size, and `seconds` covers the timed steps only (batch sampling included, as in
    nanoGPT's loop; on a GPU the clock stops after a synchronize).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    torch.manual_seed(seed)
    cuda = device.startswith("cuda")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cfg = RefConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
    model = RefGPT(cfg).to(device)
    model.train()
    optimizer = make_optimizer(model, fused=cuda)
    forward = torch.compile(model) if compile else model
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> Tensor:
        x, y = get_batch(train_ids, batch_size, block_size)
        if cuda:
            x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        with autocast:
            _, loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for _ in range(warmup_steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    final = float(loss.item())  # waits for the GPU
    seconds = time.perf_counter() - t0
    return {
        "tokens_per_s": steps * batch_size * block_size / seconds,
        "steps": steps,
        "final_loss": final,
        "seconds": seconds,
    }


def load_shakespeare_chars(path: Path = SHAKESPEARE) -> tuple[np.ndarray, int]:
    """Character-level ids (index into the sorted set of characters) and the vocabulary size."""
    text = path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    return np.array([stoi[ch] for ch in text], dtype=np.uint16), len(chars)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ids, vocab = load_shakespeare_chars()
    n_train = int(0.9 * len(ids))
    res = run_reference(ids[:n_train], vocab, steps=args.steps, warmup_steps=args.warmup_steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, vocab {vocab}")
    print(
        f"reference loop: {res['tokens_per_s']:.0f} tokens/s over {res['steps']} steps "
        f"({res['seconds']:.2f} s), final loss {res['final_loss']:.3f}"
    )


if __name__ == "__main__":
    main()
