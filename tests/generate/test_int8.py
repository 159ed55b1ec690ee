"""Weight-only int8 decoding (`dtype=int8`): the linear layers on int8 weights with a scale per row, the rest fp32;
the fp32 tokens kept wherever the int8 error cannot decide the argmax."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from helpers import run_cli
from kiln.generate import SamplingParams, generate
from kiln.model import cpu_fast, int8_weights
from kiln.model.inference_dtype import prepare, resolve

pytestmark = pytest.mark.skipif(not int8_weights.available(), reason="this PyTorch lacks the int8 CPU kernel")


def test_quantize_rounds_each_weight_to_the_nearest_step_of_its_row():
    w = torch.randn(40, 64, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.01, 3, 40)[:, None]
    q, scale = int8_weights.quantize(w)
    assert q.dtype == torch.int8 and scale.shape == (40,)
    assert torch.equal(q.abs().amax(dim=1), torch.full((40,), 127, dtype=torch.int8))  # each row's max uses the range
    assert ((q.float() * scale[:, None] - w).abs() <= scale[:, None] / 2 + 1e-6).all()


def test_int8_linear_is_the_product_of_bf16_inputs_and_the_dequantised_weight():
    torch.manual_seed(0)
    layer = nn.Linear(64, 40)
    x = torch.randn(3, 5, 64)
    got = int8_weights.linear(layer, x)
    q, scale = int8_weights.quantize(layer.weight)
    w = q.float() * scale.to(torch.bfloat16).float()[:, None]
    want = x.to(torch.bfloat16).float() @ w.T + layer.bias
    assert got.shape == (3, 5, 40) and got.dtype == torch.float32
    # The kernel returns bf16: the product rounded to bf16's 8 bits.
    assert (got - want).abs().max() <= 2**-7 * want.abs().max()
    assert (got - layer(x)).abs().max() > 0  # and it is not the fp32 layer


def test_int8_decoding_keeps_the_fp32_tokens_until_a_near_tie(make_model, rand_ids):
    model = make_model(dtype=torch.float32, init_std=0.2, pos_encoding="rope", n_kv_head=2)
    prompt = rand_ids(8, seed=3).tolist()
    n = 24
    fp32 = generate(model, prompt, SamplingParams(temperature=0.0, max_new_tokens=n))
    q_model = prepare(copy.deepcopy(model), "int8")
    q8 = generate(q_model, prompt, SamplingParams(temperature=0.0, max_new_tokens=n))
    assert next(q_model.parameters()).dtype == torch.float32  # the fp32 weights stay; int8 copies sit beside them
    quantised = [m for m in q_model.modules() if "_kiln_int8_weights" in m.__dict__]
    assert quantised and all(m.__dict__["_kiln_int8_weights"][1].dtype == torch.int8 for m in quantised)

    # Teacher-forced along the fp32 path: how far int8's logits stray, and where the fp32 top two are close
    # enough for that to flip the argmax.
    seq = torch.tensor([prompt + fp32.tokens])
    with torch.inference_mode():
        lf = model(seq, all_logits=True)[0][0, len(prompt) - 1 : -1]
        with cpu_fast.packed_linears(q_model):
            lq = q_model(seq, all_logits=True)[0][0, len(prompt) - 1 : -1]
    err = (lf - lq).abs().max(dim=-1).values
    assert 0 < float(err.max()) <= 0.05 * float(lf.abs().max()), "int8 logits off by more than its precision"
    top2 = lf.topk(2, dim=-1).values
    decidable = (top2[:, 0] - top2[:, 1]) > 2 * err
    first_tie = int((~decidable).nonzero()[0]) if not bool(decidable.all()) else n
    assert first_tie > 0, "the test model should decide at least its first token"
    assert q8.tokens[:first_tie] == fp32.tokens[:first_tie]


def test_int8_is_for_cpus_and_named_errors(make_model):
    assert resolve("int8") == torch.float32  # the parameters stay fp32; prepare makes the int8 copies
    with pytest.raises(ValueError, match="dtype: int8 decodes on a CPU only"):
        resolve("int8", "cuda")
    with pytest.raises(ValueError, match="dtype: int8 quantises float32 weights"):
        int8_weights.enable(make_model(dtype=torch.bfloat16))
    assert not int8_weights.enabled(prepare(make_model(dtype=torch.float32), "auto"))


def test_kiln_generate_decodes_with_int8_weights(tmp_path):
    rc, out, err = run_cli(["generate", "--preset", "tiny", "--prompt", "Hello", "dtype=int8", "max_new_tokens=8",
                            "seed=1", "--no-stream"])  # fmt: skip
    assert rc == 0, out + err
    rc, _, err = run_cli(["generate", "--preset", "tiny", "--prompt", "Hi", "dtype=int4"])
    assert rc == 2 and "dtype: expected one of" in err and "'int8'" in err and "Traceback" not in err
