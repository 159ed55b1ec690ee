"""Downstream task scores during training, without kiln.train depending on kiln.eval.

kiln.eval sits above kiln.train (it reads checkpoints that training writes), so the trainer cannot import it.
Instead the trainer calls whatever scorer is registered here, and kiln.eval registers its own when imported
(`kiln train` runs through `kiln.eval.in_training.run_train`, which does so). A run that asks for eval_tasks with
no scorer registered (kiln.train used as a library on its own) is told how to get one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kiln.model import GPT
from kiln.tokenizer import Tokenizer

TaskScorer = Callable[[GPT, Tokenizer, Sequence[str]], dict[str, float]]
"""(model in eval mode, its tokenizer, task names) -> flat metrics, e.g. {"arc_easy/acc": 0.31, ...}."""

_scorer: TaskScorer | None = None


def register_task_scorer(scorer: TaskScorer) -> None:
    global _scorer
    _scorer = scorer


def task_scorer() -> TaskScorer:
    if _scorer is None:
        raise ValueError(
            "eval_tasks needs kiln.eval's scorer: run `kiln train`, or `import kiln.eval.in_training` first"
        )
    return _scorer
