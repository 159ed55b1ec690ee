"""The lm-evaluation-harness `LM` adapter's other two request types, against kiln's own computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kiln.eval.bpb import bits_per_byte
from kiln.eval.harness import kiln_lm
from kiln.generate.engine import stream_batch
from kiln.generate.sampling import SamplingParams
from kiln.tokenizer import ByteTokenizer

pytest.importorskip("lm_eval", reason="the adapter is tested where lm-eval (a test extra) is installed")


def _instance(kind: str, args: tuple):
    from lm_eval.api.instance import Instance

    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def test_loglikelihood_rolling_is_bits_per_byte_times_bytes(make_model) -> None:
    """No end-of-text token in the byte tokenizer: both score every byte but the first, in windows of block_size."""
    tok = ByteTokenizer()
    model = make_model(vocab_size=256)  # block_size 32
    text = "Rolling windows cover a long string exactly once. " * 3
    (ll,) = kiln_lm(model, tok).loglikelihood_rolling([_instance("loglikelihood_rolling", (text,))])
    bpb, _, n_bytes, _ = bits_per_byte(model, tok, iter([np.array(tok.encode(text))]), window=32, stride=32)
    assert -ll / math.log(2) == pytest.approx(bpb * n_bytes, rel=1e-9)


def test_generate_until_is_greedy_decoding_cut_at_the_stop_string(make_model) -> None:
    tok = ByteTokenizer()
    model = make_model(vocab_size=256)
    prompt = "Once upon a time"
    params = SamplingParams(temperature=0.0, max_new_tokens=12)
    free = "".join(ev.text for ev in stream_batch(model, [tok.encode(prompt)], params, tokenizer=tok))
    lm = kiln_lm(model, tok)
    (same,) = lm.generate_until([_instance("generate_until", (prompt, {"max_gen_toks": 12}))])
    assert same == free
    stop = free[3:5]
    (cut,) = lm.generate_until([_instance("generate_until", (prompt, {"until": [stop], "max_gen_toks": 12}))])
    assert cut == free[: free.index(stop)]


def test_the_adapter_scores_what_the_scorer_scores(make_model) -> None:
    tok = ByteTokenizer()
    model = make_model(vocab_size=256)
    reqs = [_instance("loglikelihood", ("The cat sat on the", " mat")), _instance("loglikelihood", ("x", "yz"))]
    got = kiln_lm(model, tok).loglikelihood(reqs)
    for (ctx, cont), (ll, _) in zip([r.args for r in reqs], got, strict=True):
        ids = tok.encode(ctx + cont)
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids[:-1]]), all_logits=True)[0][0], -1)
        n = len(tok.encode(cont))
        want = sum(float(logp[len(ids) - 1 - n + j, ids[len(ids) - n + j]]) for j in range(n))
        assert ll == pytest.approx(want, abs=1e-9)
