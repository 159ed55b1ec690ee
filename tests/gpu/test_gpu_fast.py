"""GPU checks of the issue-21 speed options, run by benchmarks/gpu.sh and skipped without CUDA: CUDA-graph decoding
picks the eager decode's tokens, the chunked loss equals the plain one under bf16 autocast and peaks lower, and a
vocabulary-padded model computes what the unpadded one does. Tiny models: seconds on one GPU."""

from __future__ import annotations

import pytest
import torch

from kiln.generate import SamplingParams, generate_batch
from kiln.generate.static_decoder import CudaGraphStep, static_decoder
from kiln.model import GPT, GPTConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu.sh runs these)"),
]

VOCAB = 96
SHAPE = dict(vocab_size=VOCAB, block_size=64, n_layer=2, n_head=4, n_embd=64)
ROPE = dict(pos_encoding="rope", norm="rmsnorm", activation="swiglu", bias=False, n_kv_head=2)
PROMPTS = [[(5 * i + 3 * j) % VOCAB for j in range(1 + (7 * i) % 11)] for i in range(8)]


def cuda_model(**kw) -> GPT:
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32: the tokens must match exactly
    torch.manual_seed(0)
    model = GPT(GPTConfig(**SHAPE, **kw)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(4.0)  # wide margins between the top tokens, so kernel rounding decides no choice
    return model.cuda()


@pytest.mark.parametrize(
    "kw", [{}, ROPE, dict(pos_encoding="alibi", attention_window=8)], ids=["gpt2", "rope-gqa", "alibi-window"]
)
def test_cuda_graph_decode_picks_the_eager_decode_tokens(kw):
    model = cuda_model(**kw)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=20)
    for n in (1, 3, 8):  # left-padded batches, 3 of them in a 4-row bucket
        want = [c.tokens for c in generate_batch(model, PROMPTS[:n], greedy)]
        got = [c.tokens for c in generate_batch(model, PROMPTS[:n], greedy, static_decode=True)]
        assert got == want, n
        decoder = static_decoder(model, n)
        assert isinstance(decoder.run, CudaGraphStep) and decoder.run.graph is not None  # it was graphed
    again = [c.tokens for c in generate_batch(model, PROMPTS[:3], greedy, static_decode=True)]  # a replayed graph
    assert again == [c.tokens for c in generate_batch(model, PROMPTS[:3], greedy)]


def test_cuda_graph_decode_in_bf16_matches_eager_bf16():
    model = cuda_model(**ROPE).to(torch.bfloat16)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16)
    want = [c.tokens for c in generate_batch(model, PROMPTS[:4], greedy)]
    got = [c.tokens for c in generate_batch(model, PROMPTS[:4], greedy, static_decode=True)]
    # bf16 kernels with and without a mask may round a near-tie differently: most sequences must agree exactly
    assert sum(a == b for a, b in zip(got, want, strict=True)) >= 3


def test_chunked_loss_equals_the_plain_loss_in_bf16_and_peaks_lower():
    shape = dict(SHAPE, vocab_size=32768, block_size=512)
    torch.manual_seed(0)
    plain = GPT(GPTConfig(**shape)).cuda().train()
    chunked = GPT(GPTConfig(**shape, loss_chunk_tokens=1024)).cuda().train()
    chunked.load_state_dict(plain.state_dict())
    g = torch.Generator("cuda").manual_seed(1)
    idx = torch.randint(0, 32768, (8, 512), device="cuda", generator=g)
    targets = torch.randint(0, 32768, (8, 512), device="cuda", generator=g)
    targets[:, :50] = -1
    results = []
    for model in (plain, chunked):
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(idx, targets)
        loss.backward()
        torch.cuda.synchronize()
        grad = model.lm_head.weight.grad.float().flatten()
        results.append((loss.item(), grad, torch.cuda.max_memory_allocated() - base))
    (loss_a, grad_a, peak_a), (loss_b, grad_b, peak_b) = results
    assert abs(loss_a - loss_b) <= 1e-3 * abs(loss_a)
    assert torch.nn.functional.cosine_similarity(grad_a, grad_b, dim=0) > 0.999
    logits_bytes = 8 * 512 * 32768 * 4  # the fp32 logits the plain path holds
    assert peak_b < peak_a - logits_bytes // 2, (peak_a, peak_b)


def test_padded_vocab_model_matches_the_unpadded_one_on_cuda():
    plain = cuda_model(**ROPE)
    padded = GPT(GPTConfig(**SHAPE, **ROPE, vocab_multiple_of=128)).cuda().eval()
    with torch.no_grad():
        for name, p in padded.state_dict().items():
            src = plain.state_dict()[name]
            p[: src.shape[0]] = src
            if p.shape != src.shape:
                p[src.shape[0] :] = 10.0  # loud padding rows: any leak changes tokens and losses
    g = torch.Generator("cuda").manual_seed(2)
    idx = torch.randint(0, VOCAB, (4, 64), device="cuda", generator=g)
    with torch.no_grad():
        _, loss_a = plain(idx, idx)
        _, loss_b = padded(idx, idx)
    assert torch.allclose(loss_a, loss_b, atol=1e-5)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16)
    for static in (False, True):
        want = [c.tokens for c in generate_batch(plain, PROMPTS[:4], greedy)]
        got = [c.tokens for c in generate_batch(padded, PROMPTS[:4], greedy, static_decode=static)]
        assert got == want


def test_bf16_moments_on_cuda_track_fused_fp32_adamw():
    """optimizer_state_dtype=bfloat16 on a GPU (whole tensors there, CUDA random bits): bf16 moments, weights that
    follow torch's fused AdamW to bf16's rounding."""
    from kiln.train.adamw_bf16 import AdamWBF16States

    torch.manual_seed(0)
    start = [torch.randn(256, 64, device="cuda"), torch.randn(64, device="cuda")]
    grads = [[torch.randn_like(p) for p in start] for _ in range(20)]
    runs = []
    for make in (lambda ps: torch.optim.AdamW(ps, lr=1e-2, fused=True), lambda ps: AdamWBF16States(ps, lr=1e-2)):
        params = [p.clone().requires_grad_() for p in start]
        opt = make(params)
        for step in grads:
            for p, g in zip(params, step, strict=True):
                p.grad = g
            opt.step()
        runs.append((params, opt))
    (ref, _), (ours, opt) = runs
    for s, a, b in zip(start, ours, ref, strict=True):
        assert (a - b).abs().max() < 0.02 * (b - s).abs().max()
    assert all(st["exp_avg_sq"].dtype == torch.bfloat16 for st in opt.state.values())
