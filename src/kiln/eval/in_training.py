"""Task scores during `kiln train` (eval_tasks=[...]): kiln.eval's scorer, registered with kiln.train's hook.

`kiln train` runs `run_train`, so importing this module (which registers the scorer) comes first; a script that
calls kiln.train.run itself imports this module to get task scores too.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from kiln.eval.evaluate import evaluate_task
from kiln.eval.tasks import Task, resolve_task
from kiln.model.gpt import GPT
from kiln.tokenizer import Tokenizer
from kiln.train import TrainConfig, TrainSummary, run
from kiln.train.task_hook import register_task_scorer


@functools.cache
def _task(spec: str) -> Task:
    return resolve_task(spec, None)


def score_tasks(model: GPT, tokenizer: Tokenizer, tasks: Sequence[str]) -> dict[str, float]:
    """{"<task>/acc": ..., "<task>/acc_norm": ..., "centred": mean centred acc} for metrics.jsonl."""
    out: dict[str, float] = {}
    centred = []
    for spec in tasks:
        result = evaluate_task(model, tokenizer, _task(spec))
        for key in ("acc", "acc_norm", "perplexity"):
            if key in result.scores:
                out[f"{result.name}/{key}"] = result.scores[key]
        centred.append(result.scores["centred"])
    out["centred"] = sum(centred) / len(centred)
    return out


register_task_scorer(score_tasks)


def run_train(config: TrainConfig) -> TrainSummary:
    """kiln.train.run with kiln.eval's task scorer registered (the `kiln train` command)."""
    for spec in config.eval_tasks:  # an unknown task fails now, not after the first eval_interval steps
        _task(spec)
    return run(config)
