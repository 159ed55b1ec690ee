"""Fine-tuning batches under bf16 on the CPU are right-padded to one of a few widths (`bucket_length`), so that
oneDNN reuses its compiled kernels instead of building new ones for every batch width; the real positions get
exactly what the unpadded forward gives them, for every way the trainers call the model."""

from __future__ import annotations

import pytest
import torch

from helpers import widths_seen
from kiln.model import GPT, GPTConfig
from kiln.model.gpt import bucket_length

V, T, WIDTH = 97, 21, 32


def test_bucket_length_few_sizes_little_waste_and_a_fixed_point():
    sizes = [bucket_length(n) for n in range(1, 4097)]
    assert len(set(sizes)) == 16 + 8 * 4  # 16 up to 256, then 8 per power of two
    for n, b in enumerate(sizes, start=1):
        assert b >= n and b % 16 == 0
        assert b - n < 16 or b - n < n / 8, (n, b)
        assert bucket_length(b) == b  # padding an already padded batch adds nothing


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=V, block_size=WIDTH, n_layer=2, n_head=2, n_embd=64))


def _calls(idx: torch.Tensor) -> dict[str, dict]:
    """The trainers' calls: SFT (packed segments, logits_at), GRPO and DPO scoring (logits_at as a mask or flat
    indices), pretraining-style targets, the reward model (branches, hidden states), all logits."""
    b, t = idx.shape
    targets = idx.roll(-1, 1).masked_fill(torch.rand(b, t) < 0.3, -1)
    segments = torch.tensor([[0] * 8 + [1] * 9 + [-1] * 4, [0] * 21, [0] * 5 + [1] * 16])
    branches = torch.tensor([[0] * 7 + [1] * 6 + [2] * 6 + [-1] * 2, [0] * 10 + [1] * 11, [0] * 4 + [1] * 17])
    mask = torch.rand(b, t) < 0.5
    return {
        "targets": {"targets": targets},
        "segments": {"targets": targets, "segments": segments},
        "logits_at mask": {"logits_at": mask},
        "logits_at indices": {"logits_at": torch.tensor([0, 5, 20, 21, 40, 62, 5])},
        "branches": {"branches": branches, "return_hidden": True},
        "all logits": {"all_logits": True},
    }


@pytest.mark.parametrize("call", list(_calls(torch.zeros(3, T, dtype=torch.long))))
def test_padded_forward_gives_the_real_positions_their_values_and_gradients(call):
    model = _model()
    idx = torch.randint(0, V, (3, T))
    kwargs = _calls(idx)[call]
    # what a padding position (segment or branch -1) holds is no one's output: compared and scored are the others
    layout = kwargs.get("branches", kwargs.get("segments"))
    real = torch.ones(3, T, 1) if layout is None or "logits_at" in kwargs else (layout >= 0)[..., None].float()
    outs, grads = [], []
    for padded in (False, True):
        model.zero_grad()
        if padded:  # fp32, the padded path called directly: only the padding logic differs, not the arithmetic
            kw = {"segments": None, "branches": None, "all_logits": False, "return_hidden": False, "logits_at": None}
            kw.update(kwargs)
            out, loss = model._forward_padded(idx, kw.pop("targets", None), WIDTH, **kw)
        else:
            out, loss = model(idx, **kwargs)
        if out is not None and "logits_at" not in kwargs:
            out = out * real
        score = loss if loss is not None else (out * torch.linspace(-1, 1, out.shape[-1])).sum()
        score.backward()
        outs.append((out, loss))
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    (plain, plain_loss), (padded, padded_loss) = outs
    assert padded.shape == plain.shape
    torch.testing.assert_close(padded, plain, atol=1e-5, rtol=1e-5)
    if plain_loss is not None:
        torch.testing.assert_close(padded_loss, plain_loss, atol=1e-6, rtol=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for k, g in grads[0].items():
        torch.testing.assert_close(grads[1][k], g, atol=1e-5, rtol=1e-4, msg=k)


def test_bf16_on_the_cpu_pads_and_fp32_does_not():
    model = _model()
    idx = torch.randint(0, V, (3, T))
    assert widths_seen(model, model, idx, all_logits=True)[0] == [T]  # fp32: MKL builds nothing per shape
    with torch.autocast("cpu", dtype=torch.bfloat16):
        seen, _ = widths_seen(model, model, idx, all_logits=True)
        bf16 = model(idx, all_logits=True)[0].float()
    assert seen == [WIDTH]
    assert bf16.shape == (3, T, V)
    torch.testing.assert_close(bf16, model(idx, all_logits=True)[0], atol=5e-2, rtol=5e-2)


def test_bf16_padding_stops_at_the_context():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=40, n_layer=1, n_head=2, n_embd=32))
    idx = torch.randint(0, V, (2, 33))  # bucket_length(33) = 48, past the context: a row may not be longer
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert widths_seen(model, model, idx, all_logits=True)[0] == [40]
