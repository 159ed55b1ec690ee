"""Tests for kiln.generate: cache vs recompute, batching, seeds, greedy, stops, logprobs, long prompts,
parameter validation."""

from __future__ import annotations

import pytest
import torch

from kiln.generate import SamplingParams, generate, generate_batch, stream, stream_batch
from kiln.model import cpu_fast
from kiln.tokenizer.char import CharTokenizer

GREEDY = dict(temperature=0.0)


def greedy(n: int, **kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, max_new_tokens=n, **kw)


def manual_greedy(model, prompt: list[int], n: int) -> tuple[list[int], list[torch.Tensor]]:
    """Argmax of a full forward over the (at most block_size) last tokens, step by step."""
    seq, tokens, logps = list(prompt), [], []
    ctx = model.config.block_size
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([seq[-ctx:]]))[0][0, -1]
            tok = int(torch.argmax(logits))
            tokens.append(tok)
            logps.append(torch.log_softmax(logits.double(), dim=-1))
            seq.append(tok)
    return tokens, logps


# --------------------------------------------------------------------------------------------- cache vs recompute

CACHE_CASES = {
    "learned": dict(pos_encoding="learned"),
    "sinusoidal": dict(pos_encoding="sinusoidal"),
    "rope": dict(pos_encoding="rope"),
    "alibi": dict(pos_encoding="alibi"),
    "none": dict(pos_encoding="none"),
    "gqa": dict(pos_encoding="rope", n_kv_head=2),
    "mqa": dict(pos_encoding="learned", n_kv_head=1),
    "window": dict(pos_encoding="rope", attention_window=5),
}


@pytest.mark.parametrize("overrides", list(CACHE_CASES.values()), ids=list(CACHE_CASES))
def test_cache_and_no_cache_generate_the_same_tokens_past_block_size(make_model, rand_ids, overrides):
    model = make_model(block_size=16, init_std=1.0, **overrides)  # wide init: varied, non-repeating output
    prompt = rand_ids(10).tolist()
    _check_cache_matches_recompute(model, prompt)


@pytest.mark.parametrize("prompt_len", [1, 15, 16])
def test_cache_matches_recompute_for_edge_prompt_lengths(make_model, rand_ids, prompt_len):
    model = make_model(block_size=16, init_std=1.0, pos_encoding="learned")
    _check_cache_matches_recompute(model, rand_ids(prompt_len).tolist())


def _check_cache_matches_recompute(model, prompt):
    params = greedy(30)
    cached = generate(model, prompt, params, use_cache=True)
    recomputed = generate(model, prompt, params, use_cache=False)
    assert len(cached.tokens) == 30 and cached.finish_reason == "length"
    assert cached.tokens == recomputed.tokens
    assert cached.logprobs == pytest.approx(recomputed.logprobs, abs=1e-5)
    # And both are the plain argmax of a full forward over the last block_size tokens.
    assert cached.tokens == manual_greedy(model, prompt, 30)[0]
    assert len(set(cached.tokens)) > 5, "degenerate model: the test would not distinguish much"


# --------------------------------------------------------------------------------------------- batching


@pytest.mark.parametrize(
    "overrides",
    [dict(pos_encoding="learned"), dict(pos_encoding="rope", n_kv_head=2), dict(pos_encoding="alibi")],
    ids=["learned", "rope-gqa", "alibi"],
)
@pytest.mark.parametrize("use_cache", [True, False])
def test_batched_greedy_equals_one_at_a_time(make_model, rand_ids, overrides, use_cache):
    model = make_model(block_size=16, init_std=0.5, **overrides)
    prompts = [rand_ids(3, seed=1).tolist(), rand_ids(9, seed=2).tolist(), rand_ids(14, seed=3).tolist()]
    params = greedy(8)
    batch = generate_batch(model, prompts, params, use_cache=use_cache)
    for prompt, got in zip(prompts, batch, strict=True):
        alone = generate(model, prompt, params, use_cache=use_cache)
        assert got.tokens == alone.tokens
        assert got.logprobs == pytest.approx(alone.logprobs, abs=1e-6)
        assert got.prompt_tokens == len(prompt)
    assert batch[0].tokens != batch[1].tokens


@pytest.mark.parametrize(
    "kwargs",
    [dict(temperature=1.0), dict(temperature=0.8, top_k=20, top_p=0.9, min_p=0.01, repetition_penalty=1.3)],
    ids=["plain", "filtered"],
)
def test_batched_sampling_with_seed_equals_single_with_offset_seeds(make_model, rand_ids, kwargs):
    model = make_model(init_std=0.05)
    prompts = [rand_ids(4, seed=1).tolist(), rand_ids(11, seed=2).tolist(), rand_ids(7, seed=3).tolist()]
    params = SamplingParams(max_new_tokens=12, seed=1234, **kwargs)
    batch = generate_batch(model, prompts, params)
    for i, (prompt, got) in enumerate(zip(prompts, batch, strict=True)):
        alone = generate(model, prompt, SamplingParams(max_new_tokens=12, seed=1234 + i, **kwargs))
        assert got.tokens == alone.tokens, f"row {i}"
    # Row 0 with seed s is not the same as row 1's draw from seed s + 1 (the offset matters).
    assert batch[0].tokens != generate(model, prompts[0], SamplingParams(max_new_tokens=12, seed=1235)).tokens


def test_stop_token_in_a_batch_finishes_only_that_row(make_model, rand_ids):
    model = make_model(init_std=0.5)
    prompts = [rand_ids(5, seed=1).tolist(), rand_ids(6, seed=2).tolist()]
    ref = generate_batch(model, prompts, greedy(15))
    stop_tok = ref[0].tokens[3]
    out = generate_batch(model, prompts, greedy(15, stop_token_ids=[stop_tok]))
    for r, o in zip(ref, out, strict=True):
        if stop_tok in r.tokens:
            k = r.tokens.index(stop_tok)
            assert o.tokens == r.tokens[: k + 1] and o.finish_reason == "stop"
        else:
            assert o.tokens == r.tokens and o.finish_reason == "length"
    assert len(out[0].tokens) != len(out[1].tokens), "rows should finish at different steps"


# --------------------------------------------------------------------------------------------- seeds & greedy


def test_same_seed_same_tokens_different_seed_differs(make_model, rand_ids):
    model = make_model(init_std=0.02)  # near-uniform next-token distributions: high entropy
    prompt = rand_ids(5).tolist()
    a = generate(model, prompt, SamplingParams(temperature=1.0, max_new_tokens=20, seed=7))
    b = generate(model, prompt, SamplingParams(temperature=1.0, max_new_tokens=20, seed=7))
    c = generate(model, prompt, SamplingParams(temperature=1.0, max_new_tokens=20, seed=8))
    assert a.tokens == b.tokens
    assert a.tokens != c.tokens
    assert len(set(a.tokens)) > 5  # really sampling from a flat distribution, not a near-greedy one


def test_top_k_one_equals_greedy_and_greedy_is_argmax_of_full_forward(make_model, rand_ids):
    model = make_model(init_std=0.5)
    prompt = rand_ids(6).tolist()
    g = generate(model, prompt, greedy(15))
    k1 = generate(model, prompt, SamplingParams(temperature=1.3, top_k=1, max_new_tokens=15, seed=3))
    assert k1.tokens == g.tokens
    tokens, logps = manual_greedy(model, prompt, 15)
    assert g.tokens == tokens
    assert g.logprobs == pytest.approx([float(lp[t]) for lp, t in zip(logps, tokens, strict=True)], abs=1e-5)


def test_greedy_with_repetition_penalty_matches_a_manual_loop(make_model, rand_ids):
    model = make_model(init_std=0.5)
    prompt = rand_ids(6).tolist()
    penalty = 3.0
    seq, expected = list(prompt), []
    with torch.no_grad():
        for _ in range(12):
            logits = model(torch.tensor([seq]))[0][0, -1].clone()
            for t in set(seq):  # prompt and generated tokens, each penalised once
                logits[t] = logits[t] / penalty if logits[t] > 0 else logits[t] * penalty
            expected.append(int(torch.argmax(logits)))
            seq.append(expected[-1])
    out = generate(model, prompt, greedy(12, repetition_penalty=penalty))
    assert out.tokens == expected
    assert out.tokens != generate(model, prompt, greedy(12)).tokens  # the penalty changed something


@pytest.mark.skipif(not cpu_fast.available(), reason="oneDNN packed linear not available here")
def test_float32_generation_through_packed_linears_matches_plain_greedy(make_model, rand_ids, monkeypatch):
    monkeypatch.setattr(cpu_fast, "forced", "packed")  # the measured plan may pick plain on this CPU
    model = make_model(dtype=torch.float32, init_std=0.5, pos_encoding="rope", n_kv_head=2)
    prompts = [rand_ids(5, seed=1).tolist(), rand_ids(9, seed=2).tolist()]
    batch = generate_batch(model, prompts, greedy(10, logprobs=3))
    assert "_kiln_packed" in model.lm_head.__dict__, "fp32 CPU generation should use the packed path"
    for prompt, got in zip(prompts, batch, strict=True):
        tokens, logps = manual_greedy(model, prompt, 10)
        assert got.tokens == tokens
        assert got.logprobs == pytest.approx([float(lp[t]) for lp, t in zip(logps, tokens, strict=True)], abs=1e-4)


# --------------------------------------------------------------------------------------------- stops


def test_stop_token_and_length(make_model, rand_ids):
    model = make_model(init_std=0.5)
    prompt = rand_ids(5).tolist()
    ref = generate(model, prompt, greedy(20))
    # The first token that appears for the first time at step >= 3.
    j = next(k for k, t in enumerate(ref.tokens) if k >= 3 and ref.tokens.index(t) == k)
    stop_tok = ref.tokens[j]
    out = generate(model, prompt, greedy(20, stop_token_ids=[stop_tok]))
    assert out.tokens == ref.tokens[: j + 1]
    assert out.tokens[-1] == stop_tok and out.finish_reason == "stop"
    events = list(stream(model, prompt, greedy(20, stop_token_ids=stop_tok)))
    assert [e.finish_reason for e in events] == [None] * j + ["stop"]

    short = generate(model, prompt, greedy(7))
    assert len(short.tokens) == 7 and short.finish_reason == "length"
    assert [e.finish_reason for e in stream(model, prompt, greedy(7))] == [None] * 6 + ["length"]
    assert short.tokens == ref.tokens[:7]
    assert short.prompt_tokens == 5


TEXT = "the quick brown fox jumps over the lazy dog, then sleeps."


@pytest.fixture
def char_model(make_model):
    tok = CharTokenizer.train(TEXT)
    model = make_model(vocab_size=tok.vocab_size, block_size=64, init_std=0.5, seed=2)
    return tok, model


def test_stop_string_spanning_several_tokens(char_model):
    tok, model = char_model
    prompt = tok.encode("the quick")
    full = generate(model, prompt, greedy(40), tokenizer=tok)
    assert full.text == tok.decode(full.tokens)
    # A 3-char stop string (3 tokens) whose first occurrence is well inside the output.
    i = next(i for i in range(3, 30) if full.text.find(full.text[i : i + 3]) == i)
    stop = full.text[i : i + 3]

    out = generate(model, prompt, greedy(40, stop=[stop]), tokenizer=tok)
    assert out.finish_reason == "stop"
    assert out.text == full.text[:i]
    assert stop not in out.text
    assert len(out.tokens) == i + 3  # generation ends on the token that completed the stop string
    streamed = list(stream(model, prompt, greedy(40, stop=stop), tokenizer=tok))
    assert "".join(e.text for e in streamed) == out.text
    assert streamed[-1].finish_reason == "stop"
    assert all(stop not in e.text for e in streamed)


def test_stop_token_text_is_not_emitted_and_rows_stop_independently(char_model):
    tok, model = char_model
    prompts = [tok.encode("the quick"), tok.encode("lazy dog")]
    fulls = generate_batch(model, prompts, greedy(30), tokenizer=tok)
    i = next(i for i in range(3, 30) if fulls[0].text.index(fulls[0].text[i]) == i)
    stop_char = fulls[0].text[i]
    out = generate(model, prompts[0], greedy(30, stop_token_ids=[tok.stoi[stop_char]]), tokenizer=tok)
    assert out.finish_reason == "stop" and out.text == fulls[0].text[:i]
    assert out.tokens == fulls[0].tokens[: i + 1]

    # Stop strings in a batch: each row is cut on its own text, as if generated alone.
    stop = fulls[0].text[i : i + 2]
    batch = generate_batch(model, prompts, greedy(30, stop=[stop]), tokenizer=tok)
    for prompt, full, got in zip(prompts, fulls, batch, strict=True):
        alone = generate(model, prompt, greedy(30, stop=[stop]), tokenizer=tok)
        assert (got.text, got.tokens, got.finish_reason) == (alone.text, alone.tokens, alone.finish_reason)
        cut = full.text.find(stop)
        assert got.text == (full.text if cut < 0 else full.text[:cut])
        assert got.finish_reason == ("length" if cut < 0 else "stop")


def test_held_back_partial_stop_is_released_at_the_end(char_model):
    tok, model = char_model
    prompt = tok.encode("the quick")
    full = generate(model, prompt, greedy(25), tokenizer=tok)
    # The output ends with the start of a stop string that never completes: it is held, then flushed.
    tail = full.text[-2:]
    missing = next(c for c in tok.chars if (tail + c) not in full.text)
    out = generate(model, prompt, greedy(25, stop=[tail + missing]), tokenizer=tok)
    assert out.text == full.text and out.finish_reason == "length"
    events = list(stream(model, prompt, greedy(25, stop=[tail + missing]), tokenizer=tok))
    # The last two characters were held back as a possible stop-string start and released with the last event.
    assert events[-1].finish_reason == "length" and events[-1].text.endswith(tail)
    assert not events[-2].text.endswith(tail[0])
    assert "".join(e.text for e in events) == full.text


# --------------------------------------------------------------------------------------------- logprobs


def test_logprobs_and_top_alternatives(make_model, rand_ids):
    model = make_model(init_std=0.5)
    prompt = rand_ids(6).tolist()
    events = list(stream(model, prompt, greedy(10, logprobs=5)))
    tokens, logps = manual_greedy(model, prompt, 10)
    assert [e.token_id for e in events] == tokens
    for e, lp in zip(events, logps, strict=True):
        assert len(e.top) == 5
        values = [v for _, v in e.top]
        assert values == sorted(values, reverse=True)
        assert e.top[0][0] == e.token_id
        assert e.logprob == pytest.approx(float(lp[e.token_id]), abs=1e-5)
        expected = torch.topk(lp, 5)
        assert [i for i, _ in e.top] == expected.indices.tolist()
        assert values == pytest.approx(expected.values.tolist(), abs=1e-5)
    # logprobs=0: no alternatives.
    assert all(e.top == [] for e in stream(model, prompt, greedy(3)))


def test_logprobs_are_of_the_model_distribution_not_the_tempered_one(make_model, rand_ids):
    model = make_model(init_std=0.5)
    prompt = rand_ids(6).tolist()
    ev = next(iter(stream(model, prompt, SamplingParams(temperature=0.3, top_k=3, max_new_tokens=1, seed=0))))
    _, logps = manual_greedy(model, prompt, 1)
    assert ev.logprob == pytest.approx(float(logps[0][ev.token_id]), abs=1e-5)


# --------------------------------------------------------------------------------------------- long prompts, errors


@pytest.mark.parametrize("use_cache", [True, False])
def test_prompt_longer_than_block_size_keeps_the_last_block(make_model, rand_ids, use_cache):
    model = make_model(block_size=16, init_std=0.5, pos_encoding="learned")
    prompt = rand_ids(25).tolist()
    with pytest.warns(UserWarning, match="block|context"):
        long = generate(model, prompt, greedy(6), use_cache=use_cache)
    short = generate(model, prompt[-16:], greedy(6), use_cache=use_cache)
    assert long.tokens == short.tokens
    assert long.prompt_tokens == 16


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(top_k=-2), "top_k"),
        (dict(logprobs=100), "logprobs"),
        (dict(min_p=2.0), "min_p"),
    ],
)
def test_invalid_params_raise_naming_the_parameter(make_model, kwargs, name):
    model = make_model()
    with pytest.raises(ValueError, match=name):
        generate(model, [1, 2, 3], SamplingParams(**kwargs))


def test_empty_prompt_is_rejected(make_model):
    model = make_model()
    with pytest.raises(ValueError, match="prompt"):
        generate(model, [], greedy(3))
    with pytest.raises(ValueError, match="prompt"):
        generate_batch(model, [[1, 2], []], greedy(3))
    with pytest.raises(ValueError, match="prompt"):
        list(stream_batch(model, [], greedy(3)))


@pytest.mark.parametrize("training", [True, False])
def test_training_mode_is_restored(make_model, training):
    model = make_model(dropout=0.2, train=training)
    a = generate(model, [1, 2, 3], greedy(5))
    assert model.training is training
    b = generate(model, [1, 2, 3], greedy(5))
    assert a.tokens == b.tokens  # generation runs in eval mode: dropout off
    assert all(p.grad is None for p in model.parameters())
