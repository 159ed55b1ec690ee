"""GSM8K through kiln against lm-evaluation-harness 0.4 itself: its own gsm8k task (prompt, stops, filters,
exact_match read from the installed task YAML), pointed at kiln's bundled slice, greedy.

The model: a small GPT-2 built with transformers and the same weights in kiln, with the embedding rows of digit,
"####", "$", "," and "Question" tokens scaled up (the embedding is tied to the LM head, so a random model then
writes numbers): a plain random model writes no digits and the extraction would compare "[invalid]" with
"[invalid]". Both sides see the same file, so per item the generated text, both filters' extracted answers and
both exact matches must be equal."""

from __future__ import annotations

import os

import pytest
import torch

from kiln.eval.evaluate import evaluate_task
from kiln.eval.generative import GenerationSettings
from kiln.eval.harness import harness_task, kiln_lm
from kiln.eval.tasks import resolve_task

pytestmark = [pytest.mark.shared, pytest.mark.slow]

N, MAX_NEW = 8, 32
NUMERIC = [str(i) for i in range(10)] + [f" {i}" for i in range(20)]
NUMERIC += [" ####", "####", "#", ",", ".", "$", " $", "\n", " Question", ":", " The", " is", " answer"]


@pytest.fixture(scope="module")
def numeric_pair(shared_data, tmp_path_factory):
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from kiln.model import GPT
    from kiln.model.hf import from_hf_gpt2, gpt2_config
    from kiln.tokenizer import get_tokenizer
    from kiln.tokenizer.hf_export import export_hf

    tok = get_tokenizer(shared_data / "tokenizers" / "gpt2")
    hf_tok = GPT2TokenizerFast(tokenizer_file=str(export_hf(tok, tmp_path_factory.mktemp("tok") / "tokenizer.json")))
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=64, n_positions=256, initializer_range=0.2)).eval()
    with torch.no_grad():
        hf.transformer.wte.weight[sorted({i for w in NUMERIC for i in tok.encode(w)})] *= 4
    model = GPT(gpt2_config(2, 2, 64, block_size=256)).eval()
    model.load_state_dict(from_hf_gpt2(hf.state_dict(), 2))
    return hf, hf_tok, model, tok


def _harness(lm, task):
    from lm_eval import simple_evaluate

    cfg = harness_task(task.name, task.path, task.kind, max_gen_toks=MAX_NEW)
    out = simple_evaluate(model=lm, tasks=[cfg], limit=N, log_samples=True, bootstrap_iters=0)
    by_filter: dict[str, list[dict]] = {}
    for s in out["samples"][task.name]:
        by_filter.setdefault(s["filter"], []).append(s)
    return {f: sorted(v, key=lambda s: s["doc_id"]) for f, v in by_filter.items()}, out["results"][task.name]


def _check_same(result, reference, results) -> None:
    assert set(reference) == {"strict-match", "flexible-extract"}
    for filt, short in (("strict-match", "strict"), ("flexible-extract", "flexible")):
        samples = reference[filt]
        assert len(samples) == len(result.decisions) == N
        for d, s in zip(result.decisions, samples, strict=True):
            assert d["responses"] == [s["resps"][0][0]], s["doc_id"]
            assert d[f"extracted_{short}"] == [s["filtered_resps"][0]], s["doc_id"]
            assert d[f"exact_match_{short}"] == s["exact_match"], s["doc_id"]
        assert result.scores[f"exact_match_{short}"] == pytest.approx(results[f"exact_match,{filt}"])
    # The slice exercises the extraction, not only its fallback.
    assert any(d["extracted_flexible"] != ["[invalid]"] for d in result.decisions)


def test_gsm8k_matches_the_harness_hf_backend(numeric_pair) -> None:
    from lm_eval.models.huggingface import HFLM

    hf, hf_tok, model, tok = numeric_pair
    task = resolve_task("gsm8k", None, N)
    ours = evaluate_task(model, tok, task, generation=GenerationSettings(max_new_tokens=MAX_NEW))
    reference, results = _harness(HFLM(pretrained=hf, tokenizer=hf_tok, batch_size=4, max_length=256), task)
    _check_same(ours, reference, results)


def test_the_harness_scoring_kiln_s_generations_through_the_adapter_agrees(numeric_pair) -> None:
    _, _, model, tok = numeric_pair
    task = resolve_task("gsm8k", None, N)
    ours = evaluate_task(model, tok, task, generation=GenerationSettings(max_new_tokens=MAX_NEW))
    _check_same(ours, *_harness(kiln_lm(model, tok), task))
