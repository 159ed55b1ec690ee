"""kiln eval against lm-evaluation-harness 0.4's HF backend: same model, same task files, same per-item choices."""

from __future__ import annotations

import pytest

from kiln.eval.evaluate import evaluate_task
from kiln.eval.harness import harness_task, kiln_lm
from kiln.eval.tasks import resolve_task

pytestmark = [pytest.mark.shared, pytest.mark.slow]

N = 16  # items per task: enough to cover every shape (and truncation: BoolQ passages exceed 128 tokens)
TASKS = ["arc_easy", "winogrande", "boolq", "lambada"]


def _harness(lm, tasks, n=N):
    from lm_eval import simple_evaluate

    configs = [harness_task(t.name, t.path, t.kind) for t in tasks]
    out = simple_evaluate(model=lm, tasks=configs, limit=n, log_samples=True, bootstrap_iters=0)
    return {name: sorted(samples, key=lambda s: s["doc_id"]) for name, samples in out["samples"].items()}


def _check_same(kiln_results, reference):
    for name, result in kiln_results.items():
        samples = reference[name]
        assert len(samples) == len(result.decisions)
        for d, s in zip(result.decisions, samples, strict=True):
            ref_lls = [ll for ll, _ in s["filtered_resps"]]
            ours = d["loglik"] if isinstance(d["loglik"], list) else [d["loglik"]]
            assert ours == pytest.approx(ref_lls, rel=1e-4, abs=1e-3), (name, s["doc_id"])
            assert d["acc"] == s["acc"], (name, s["doc_id"])
            if "acc_norm" in s:
                assert d["acc_norm"] == s["acc_norm"], (name, s["doc_id"])


def test_same_choices_as_the_harness_hf_backend(gpt2_pair) -> None:
    from lm_eval.models.huggingface import HFLM

    hf, hf_tok, model, tok = gpt2_pair
    tasks = [resolve_task(t, None, N) for t in TASKS]
    ours = {t.name: evaluate_task(model, tok, t) for t in tasks}
    reference = _harness(HFLM(pretrained=hf, tokenizer=hf_tok, batch_size=8, max_length=128), tasks)
    _check_same(ours, reference)


def test_the_harness_driving_kiln_through_the_adapter_gets_kiln_s_scores(gpt2_pair) -> None:
    _, _, model, tok = gpt2_pair
    tasks = [resolve_task(t, None, 8) for t in ("piqa", "wsc", "lambada")]
    ours = {t.name: evaluate_task(model, tok, t) for t in tasks}
    _check_same(ours, _harness(kiln_lm(model, tok), tasks, 8))
