"""lm-evaluation-harness interop: an `LM` over a kiln model, and harness task configs for kiln's task files.

`kiln_lm(model, tokenizer)` lets the harness drive a kiln model in-process (`lm_eval.simple_evaluate(model=...)`),
for its hundreds of other tasks; its log-likelihoods come from the same scorer `kiln eval` uses (contexts shared
across a request batch are encoded once). `harness_task(...)` is the harness's description of one of kiln's task
files, so the reference can be run on exactly the items kiln scores (the exactness test and benchmarks/eval.py).

lm_eval is imported inside the functions: kiln runs without it installed (it is a test extra).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from kiln.eval.bpb import windows
from kiln.eval.requests import encode_pair, end_of_text
from kiln.eval.scoring import score_pairs
from kiln.model.gpt import GPT
from kiln.tokenizer import Tokenizer


def harness_task(name: str, path: str | Path, kind: str, max_gen_toks: int = 256) -> dict[str, Any]:
    """The harness task config (what a task YAML holds) that reads `path` (llm-foundry JSONL) as kiln does:
    the prompt and choices verbatim, a space before each continuation, acc and acc_norm. For a generative file
    (GSM8K) the harness's own gsm8k task, zero-shot, reading the local file instead of the Hub."""
    base = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(path)}},
        "test_split": "test",
    }
    if kind == "gen":
        return {**base, **gsm8k_config(max_gen_toks)}
    if kind == "lm":
        return {
            **base,
            "output_type": "loglikelihood",
            "doc_to_text": "{{context}}",
            "doc_to_target": "{{' ' + continuation}}",
            "metric_list": [{"metric": "perplexity"}, {"metric": "acc"}],
        }
    mc = {"output_type": "multiple_choice", "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}
    if kind == "schema":  # the harness's "multiple inputs": doc_to_text is the gold index, the options are contexts
        return {**base, **mc, "doc_to_text": "{{gold}}", "doc_to_choice": "{{context_options}}",
                "doc_to_target": "{{continuation}}"}  # fmt: skip
    return {**base, **mc, "doc_to_text": "{{query}}", "doc_to_choice": "{{choices}}", "doc_to_target": "{{gold}}"}


def gsm8k_config(max_gen_toks: int) -> dict[str, Any]:
    """lm_eval/tasks/gsm8k/gsm8k.yaml's prompt, stops, filters and metric (read from the installed harness, so
    the test compares kiln with what the harness really runs), zero-shot, with max_gen_toks set."""
    import importlib.util

    import yaml

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        raise ImportError("the gsm8k task config needs lm-eval: pip install lm-eval")
    yaml_path = Path(spec.origin).parent / "tasks" / "gsm8k" / "gsm8k.yaml"
    cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    keep = ("output_type", "doc_to_text", "doc_to_target", "metric_list", "generation_kwargs", "filter_list", "repeats")
    out = {k: cfg[k] for k in keep}
    out["generation_kwargs"] = {**out["generation_kwargs"], "max_gen_toks": max_gen_toks}
    out["num_fewshot"] = 0
    return out


@functools.cache
def _lm_class() -> type:
    from lm_eval.api.model import LM

    class KilnLM(LM):
        """lm-evaluation-harness's model interface over a kiln GPT and its tokenizer."""

        def __init__(self, model: GPT, tokenizer: Tokenizer, batch_tokens: int = 4096) -> None:
            super().__init__()
            self.model, self.tokenizer, self.batch_tokens = model.eval(), tokenizer, batch_tokens
            self.eot = end_of_text(tokenizer)

        def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            pairs = [encode_pair(self.tokenizer, *r.args[:2], self.eot) for r in requests]
            return [(s.loglik, s.greedy) for s in score_pairs(self.model, pairs, batch_tokens=self.batch_tokens)]

        def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
            """Whole-string log-likelihood, conditioned on end-of-text, in non-overlapping windows of block_size
            (the harness's own rolling windows score each token once with as much context as fits)."""
            import torch

            block = self.model.config.block_size
            device = self.model.lm_head.weight.device
            out = []
            for r in requests:
                ids = ([self.eot] if self.eot is not None else []) + self.tokenizer.encode(r.args[0])
                total = 0.0
                for start, end, first in windows(len(ids), block, block):
                    x = torch.tensor([ids[start:end]], device=device)
                    with torch.no_grad():
                        logits, _ = self.model(x, all_logits=True)
                    logp = torch.log_softmax(logits[0].double(), -1)
                    tgt = torch.tensor(ids[start + 1 : end + 1], device=device)
                    picked = logp.gather(-1, tgt[:, None])[:, 0]
                    total += float(picked[first - start - 1 :].sum())
                out.append(total)
            return out

        def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
            """Greedy continuation until a stop string (the harness's `until`), end-of-text (its HF backend
            stops at EOS too) or max_gen_toks tokens; requests with the same settings decode together in kiln's
            continuous batcher (kiln.eval.generative.generate_all)."""
            from kiln.eval.generative import generate_all
            from kiln.generate.sampling import SamplingParams

            out: list[str] = [""] * len(requests)
            groups: dict[tuple, list[int]] = {}
            for i, r in enumerate(requests):
                kwargs = dict(r.args[1] or {})
                until = kwargs.get("until") or []
                until = (until,) if isinstance(until, str) else tuple(until)
                groups.setdefault((until, int(kwargs.get("max_gen_toks", 256))), []).append(i)
            for (until, max_new), members in groups.items():
                params = SamplingParams(temperature=0.0, max_new_tokens=max_new, stop=until,
                                        stop_token_ids=() if self.eot is None else (self.eot,))  # fmt: skip
                prompts = [self.tokenizer.encode(requests[i].args[0]) for i in members]
                for i, text in zip(members, generate_all(self.model, self.tokenizer, prompts, params), strict=True):
                    out[i] = text
            return out

    return KilnLM


def kiln_lm(model: GPT, tokenizer: Tokenizer, batch_tokens: int = 4096) -> Any:
    """An lm_eval `LM` over a kiln model (needs lm-eval installed: `pip install lm-eval`)."""
    try:
        cls = _lm_class()
    except ImportError as e:
        raise ImportError("the lm-evaluation-harness adapter needs lm-eval: pip install lm-eval") from e
    return cls(model, tokenizer, batch_tokens)
