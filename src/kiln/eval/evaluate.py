"""One task against one model: build the requests, score them (shared contexts once), decide each item."""

from __future__ import annotations

from dataclasses import dataclass, field

from kiln.eval.generation_settings import GenerationSettings
from kiln.eval.generative import evaluate_generative
from kiln.eval.metrics import decide, task_scores
from kiln.eval.requests import encode_pair, end_of_text, fewshot_prefix, pairs
from kiln.eval.scoring import Progress, score_pairs
from kiln.eval.tasks import Task
from kiln.model.gpt import GPT
from kiln.tokenizer import Tokenizer


@dataclass
class TaskResult:
    name: str
    kind: str
    items: int
    num_fewshot: int
    scores: dict[str, float]
    seconds: float
    decisions: list[dict[str, object]] = field(default_factory=list)

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


def task_requests(task: Task, tokenizer: Tokenizer, num_fewshot: int = 0, seed: int = 1234) -> list[list[tuple]]:
    """Per item, the (context tokens, continuation tokens) of each option."""
    eot = end_of_text(tokenizer)
    out = []
    for i, item in enumerate(task.items):
        prefix = fewshot_prefix(task, i, num_fewshot, seed)
        out.append([encode_pair(tokenizer, ctx, cont, eot) for ctx, cont in pairs(item, prefix)])
    return out


def evaluate_task(
    model: GPT,
    tokenizer: Tokenizer,
    task: Task,
    *,
    num_fewshot: int = 0,
    seed: int = 1234,
    batch_tokens: int = 4096,
    progress: bool = False,
    generation: GenerationSettings | None = None,
) -> TaskResult:
    """Score every item of `task`; the result has the task's metrics and each item's decision. Generative tasks
    (GSM8K) generate with `generation` (default: greedy, 256 new tokens)."""
    if task.kind == "gen":
        scores, decisions, seconds = evaluate_generative(
            model, tokenizer, task, generation or GenerationSettings(), num_fewshot=num_fewshot, seed=seed,
            progress=progress,
        )  # fmt: skip
        return TaskResult(task.name, task.kind, len(task.items), num_fewshot, scores, seconds, decisions)
    requests = task_requests(task, tokenizer, num_fewshot, seed)
    flat = [p for item in requests for p in item]
    bar = Progress(task.name, len(flat), len(requests) / len(flat), progress)
    scored = score_pairs(model, flat, batch_tokens=batch_tokens, on_progress=bar.advance, what=task.name)
    decisions, at = [], 0
    for item, reqs in zip(task.items, requests, strict=True):
        decisions.append(decide(item, scored[at : at + len(reqs)]))
        at += len(reqs)
    scores = task_scores(task.kind, decisions, task.random_baseline)
    return TaskResult(task.name, task.kind, len(task.items), num_fewshot, scores, bar.seconds, decisions)
