"""Evaluation tasks: llm-foundry's local JSONL files (the Mosaic Eval Gauntlet format nanochat's CORE reads), and
GSM8K's own JSONL (openai/grade-school-math) for the generative task.

Four shapes, told apart by each file's keys:
- multiple choice `{query, choices, gold}`: one context, several continuations (ARC, PIQA, COPA, BoolQ, ...);
- schema `{context_options, continuation, gold}`: several contexts, one continuation (Winogrande, WSC): the
  "partial scoring" of Trinh & Le 2018, which lm-evaluation-harness also uses;
- language modelling `{context, continuation}`: LAMBADA, scored by whether the continuation is the greedy one;
- generative `{question, answer}` with the answer ending "#### N": GSM8K, scored by exact match of the generated
  final number (kiln.eval.generative).

A slice of each task (the first 50 items) ships in kiln/assets/eval/ so `kiln eval CHECKPOINT` runs anywhere; the
full files are read from `data_dir` (e.g. ../shared/data/eval/llm-foundry) or given as paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kiln.utils.suggest import did_you_mean

# Task name -> file name in llm-foundry's local_data (and in the bundled slices).
TASK_FILES: dict[str, str] = {
    "arc_easy": "arc_easy.jsonl",
    "arc_challenge": "arc_challenge.jsonl",
    "piqa": "piqa.jsonl",
    "winogrande": "winogrande.jsonl",
    "wsc": "winograd_wsc.jsonl",
    "copa": "copa.jsonl",
    "boolq": "boolq.jsonl",
    "commonsense_qa": "commonsense_qa.jsonl",
    "openbook_qa": "openbook_qa.jsonl",
    "siqa": "siqa.jsonl",
    "lambada": "lambada_openai.jsonl",
}

# Generative tasks: run only when named (generation costs far more than scoring a few choices), so `kiln eval
# CHECKPOINT` with no task and the CORE-style mean over the default tasks stay what they were.
GENERATIVE_FILES: dict[str, str] = {
    "gsm8k": "gsm8k_test.jsonl",
}


class TaskFileError(ValueError):
    """A task file that cannot be read as one of the three shapes (the message names the file and line)."""


@dataclass(frozen=True)
class Item:
    """One question. `kind` is "mc", "schema", "lm" or "gen"; for "lm" `choices` holds the one continuation, gold 0;
    for "gen" `contexts` holds the question and `choices` the reference answer (with its "#### N"), gold 0."""

    kind: str
    contexts: list[str]
    """mc and lm: the one context; schema: one context per option."""
    choices: list[str]
    """mc: the answer texts; schema: the one continuation; lm: the word to predict."""
    gold: int

    @property
    def n_options(self) -> int:
        return len(self.contexts) if self.kind == "schema" else len(self.choices)


@dataclass
class Task:
    name: str
    path: str
    items: list[Item]

    @property
    def kind(self) -> str:
        return self.items[0].kind

    @property
    def random_baseline(self) -> float:
        """Accuracy of guessing uniformly: the mean of 1/options over the items (0 for language modelling and
        generation: a guessed number is as good as never right)."""
        if self.kind in ("lm", "gen"):
            return 0.0
        return sum(1 / it.n_options for it in self.items) / len(self.items)


def _str_list(value: object) -> bool:
    return isinstance(value, list) and len(value) >= 2 and all(isinstance(v, str) for v in value)


def parse_item(row: object, where: str) -> Item:
    """One JSON object -> Item, or TaskFileError naming `where` (file:line) and what is wrong."""
    if not isinstance(row, dict):
        raise TaskFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
    gold = row.get("gold")
    if "choices" in row:
        query, choices = row.get("query"), row["choices"]
        if not isinstance(query, str) or not _str_list(choices):
            raise TaskFileError(f"{where}: multiple choice needs a string 'query' and a list of >= 2 string 'choices'")
        item = Item("mc", [query], list(choices), gold if isinstance(gold, int) else -1)
    elif "context_options" in row:
        options, cont = row["context_options"], row.get("continuation")
        if not _str_list(options) or not isinstance(cont, str):
            raise TaskFileError(f"{where}: schema items need a list of >= 2 'context_options' and a 'continuation'")
        item = Item("schema", list(options), [cont], gold if isinstance(gold, int) else -1)
    elif "context" in row and "continuation" in row:
        if not isinstance(row["context"], str) or not isinstance(row["continuation"], str):
            raise TaskFileError(f"{where}: 'context' and 'continuation' must be strings")
        return Item("lm", [row["context"]], [row["continuation"]], 0)
    elif "question" in row and "answer" in row:
        question, answer = row["question"], row["answer"]
        if not isinstance(question, str) or not isinstance(answer, str):
            raise TaskFileError(f"{where}: 'question' and 'answer' must be strings")
        if "#### " not in answer:
            raise TaskFileError(f"{where}: the answer has no final '#### N' (GSM8K's marker of the answer number)")
        return Item("gen", [question], [answer], 0)
    else:
        raise TaskFileError(
            f"{where}: unknown item shape with keys {sorted(row)}: expected query+choices+gold, "
            "context_options+continuation+gold, context+continuation, or question+answer"
        )
    if not 0 <= item.gold < item.n_options or isinstance(gold, bool):
        raise TaskFileError(f"{where}: 'gold' must be an index into the {item.n_options} options, got {gold!r}")
    return item


def read_task_file(path: str | Path, name: str | None = None, limit: int | None = None) -> Task:
    """Read a JSONL task file (one item per line; blank lines skipped); every item must have the same shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task file not found: {path}")
    items: list[Item] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if limit is not None and len(items) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskFileError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            item = parse_item(row, f"{path}:{lineno}")
            if items and item.kind != items[0].kind:
                raise TaskFileError(f"{path}:{lineno}: a {item.kind} item in a file of {items[0].kind} items")
            items.append(item)
    if not items:
        raise TaskFileError(f"{path}: no items")
    return Task(name or path.stem, str(path), items)


def task_file_name(name: str) -> str:
    return TASK_FILES.get(name) or GENERATIVE_FILES[name]


def bundled_task_path(name: str) -> Path:
    # Beside this package (kiln/assets/eval, shipped as package data), not via importlib.resources: kiln.assets is
    # a namespace package, which resources resolves to a multiplexed path when two checkouts are on sys.path.
    return Path(__file__).resolve().parents[1] / "assets" / "eval" / task_file_name(name)


def full_task_path(name: str, data_dir: str | Path) -> Path:
    """The task's full file in data_dir. GSM8K's sits one level above llm-foundry's files in the shared data
    (eval/gsm8k_test.jsonl beside eval/llm-foundry/), so data_dir's parent is tried too for it."""
    path = Path(data_dir) / task_file_name(name)
    if name in GENERATIVE_FILES and not path.exists() and (Path(data_dir).parent / path.name).exists():
        return Path(data_dir).parent / path.name
    return path


def resolve_task(spec: str, data_dir: str | Path | None, limit: int | None = None) -> Task:
    """A task by name (from data_dir when given, else the bundled slice) or a path to a .jsonl file."""
    if spec in TASK_FILES or spec in GENERATIVE_FILES:
        path = full_task_path(spec, data_dir) if data_dir is not None else bundled_task_path(spec)
        return read_task_file(path, spec, limit)
    if spec.endswith(".jsonl") or Path(spec).is_file():
        return read_task_file(spec, None, limit)
    known = [*TASK_FILES, *GENERATIVE_FILES]
    hint = did_you_mean(spec, known)
    raise ValueError(f"unknown task {spec!r}{hint} (known tasks are {', '.join(known)}, or give a .jsonl path)")
