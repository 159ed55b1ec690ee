"""kiln against the Hugging Face transformers implementations, with identical weights: GPT-2 both ways,
and a Llama-style model (RoPE, RMSNorm, SwiGLU, GQA, untied) loaded from LlamaForCausalLM."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from kiln.generate import SamplingParams, generate  # noqa: E402
from kiln.model import GPT, GPTConfig  # noqa: E402
from kiln.model.hf import from_hf_gpt2, from_hf_llama, to_hf_gpt2  # noqa: E402

N_LAYER, N_HEAD, N_EMBD, VOCAB, BLOCK = 2, 4, 64, 101, 32


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Weights well away from the tiny default init (norm gains and biases too), so a mismatch anywhere shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            is_norm = "norm" in name or "ln_" in name or name.endswith("norm.weight")
            if is_norm and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_((0.3 if p.dim() > 1 else 0.1) * noise)


def _kiln_gpt2() -> GPT:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD)
    model = GPT(cfg).eval()
    _randomize(model, seed=1)
    return model


def _hf_gpt2():
    cfg = transformers.GPT2Config(
        n_layer=N_LAYER,
        n_head=N_HEAD,
        n_embd=N_EMBD,
        vocab_size=VOCAB,
        n_positions=BLOCK,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,
        eos_token_id=None,
    )
    return transformers.GPT2LMHeadModel(cfg).eval()


def _load_gpt2(hf, sd) -> None:
    result = hf.load_state_dict(sd, strict=False)
    params = {name for name, _ in hf.named_parameters(remove_duplicate=False)}
    persistent = set(hf.state_dict())
    assert not [k for k in result.missing_keys if k in params or k in persistent], result.missing_keys
    assert not result.unexpected_keys, result.unexpected_keys


@pytest.fixture(scope="module")
def gpt2_pair():
    kiln_model = _kiln_gpt2()
    hf = _hf_gpt2()
    _load_gpt2(hf, to_hf_gpt2(kiln_model.state_dict(), N_LAYER))
    return kiln_model, hf


def test_kiln_gpt2_logits_equal_transformers(gpt2_pair):
    kiln_model, hf = gpt2_pair
    idx = torch.randint(0, VOCAB, (2, BLOCK), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = kiln_model(idx, all_logits=True)[0]
        theirs = hf(idx).logits
    assert ours.shape == theirs.shape == (2, BLOCK, VOCAB)
    assert ours.abs().max() > 1.0  # far from a uniform distribution: the comparison means something
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().max()


def test_gpt2_round_trip_gives_identical_state(gpt2_pair):
    kiln_model, hf = gpt2_pair
    ours = kiln_model.state_dict()
    back = from_hf_gpt2(hf.state_dict(), N_LAYER)
    assert set(back) == set(ours)
    for name, tensor in ours.items():
        assert back[name].shape == tensor.shape, name
        assert torch.equal(back[name], tensor), name
    # Also from a bare GPT2Model state dict (no "transformer." prefix, no head): the head is tied.
    bare = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    back2 = from_hf_gpt2(bare, N_LAYER)
    assert torch.equal(back2["lm_head.weight"], ours["wte.weight"])
    fresh = GPT(kiln_model.config).eval()
    fresh.load_state_dict(back2, strict=True)
    idx = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(fresh(idx, all_logits=True)[0], kiln_model(idx, all_logits=True)[0])


def test_greedy_generation_equals_transformers_generate():
    kiln_model = _kiln_gpt2().double()
    hf = _hf_gpt2()
    _load_gpt2(hf, to_hf_gpt2(kiln_model.state_dict(), N_LAYER))
    hf = hf.double()
    prompt = torch.randint(0, VOCAB, (1, 6), generator=torch.Generator().manual_seed(4))
    ours = generate(kiln_model, prompt[0].tolist(), SamplingParams(temperature=0.0, max_new_tokens=20))
    with torch.no_grad():
        theirs = hf.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=20,
            min_new_tokens=20,
            do_sample=False,
            pad_token_id=0,
        )
    assert theirs.shape == (1, 26)
    assert ours.tokens == theirs[0, 6:].tolist()
    assert len(set(ours.tokens)) > 3


# --------------------------------------------------------------------------------------------- Llama


def _llama_pair():
    torch.manual_seed(0)
    hf_cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=None,
        eos_token_id=None,
    )
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    _randomize(hf, seed=5)
    cfg = GPTConfig(
        vocab_size=VOCAB,
        block_size=64,
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        n_embd=64,
        pos_encoding="rope",
        rope_theta=10000.0,
        norm="rmsnorm",
        norm_eps=1e-5,
        activation="swiglu",
        mlp_hidden=96,
        bias=False,
        tie_embeddings=False,
    )
    kiln_model = GPT(cfg).eval()
    kiln_model.load_state_dict(from_hf_llama(hf.state_dict(), cfg), strict=True)
    return kiln_model, hf


def test_kiln_llama_logits_equal_transformers():
    kiln_model, hf = _llama_pair()
    assert kiln_model.lm_head.weight is not kiln_model.wte.weight
    idx = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ours = kiln_model(idx, all_logits=True)[0]
        theirs = hf(idx).logits
    assert ours.abs().max() > 1.0
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=0), (ours - theirs).abs().max()


def test_kiln_llama_cached_greedy_generation_equals_transformers():
    kiln_model, hf = _llama_pair()
    kiln_model, hf = kiln_model.double(), hf.double()
    prompt = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(7))
    ours = generate(kiln_model, prompt[0].tolist(), SamplingParams(temperature=0.0, max_new_tokens=15))
    with torch.no_grad():
        theirs = hf.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=15,
            min_new_tokens=15,
            do_sample=False,
            pad_token_id=0,
        )
    assert ours.tokens == theirs[0, 5:].tolist()
