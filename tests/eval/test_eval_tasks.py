"""Task files: the three shapes, the bundled slices, errors that name the file and line, few-shot prompts."""

from __future__ import annotations

import json

import pytest

from kiln.eval.requests import encode_pair, fewshot_prefix, pairs
from kiln.eval.tasks import TASK_FILES, TaskFileError, read_task_file, resolve_task
from kiln.tokenizer import ByteTokenizer


def test_every_bundled_slice_reads_with_its_shape() -> None:
    kinds = {name: resolve_task(name, None).kind for name in TASK_FILES}
    assert kinds["winogrande"] == kinds["wsc"] == "schema" and kinds["lambada"] == "lm"
    assert {kinds[n] for n in TASK_FILES if n not in ("winogrande", "wsc", "lambada")} == {"mc"}
    assert all(len(resolve_task(n, None).items) == 50 for n in TASK_FILES)
    assert resolve_task("arc_easy", None).random_baseline == pytest.approx(0.25)


def test_unknown_task_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'arc_eazy'.*arc_easy, arc_challenge"):
        resolve_task("arc_eazy", None)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"query": "q", "choices": ["a", "b"], "gold": 2}', "'gold' must be an index"),
        ('{"query": "q", "choices": ["a"], "gold": 0}', "list of >= 2"),
        ('{"question": "q"}', "unknown item shape"),
        ('{"context": "c", "continuation": "x"}', "a lm item in a file of mc items"),
    ],
)
def test_a_malformed_task_file_names_its_line(tmp_path, line, message) -> None:
    path = tmp_path / "t.jsonl"
    good = json.dumps({"query": "q", "choices": ["a", "b"], "gold": 0})
    path.write_text(f"{good}\n\n{good}\n{line}\n")
    with pytest.raises(TaskFileError, match=f"t.jsonl:4: .*{message}"):
        read_task_file(path)


def test_pairs_put_a_space_before_each_continuation_and_schema_varies_the_context() -> None:
    wino = resolve_task("winogrande", None, limit=1).items[0]
    (c0, x0), (c1, x1) = pairs(wino)
    assert x0 == x1 == " " + wino.choices[0] and [c0, c1] == wino.contexts
    arc = resolve_task("arc_easy", None, limit=1).items[0]
    assert pairs(arc) == [(arc.contexts[0], " " + c) for c in arc.choices]


def test_trailing_space_of_the_context_moves_to_the_continuation_as_the_harness_does() -> None:
    tok = ByteTokenizer()
    assert encode_pair(tok, "Answer: ", "yes", None) == (list(b"Answer:"), list(b" yes"))


def test_fewshot_examples_are_other_solved_items_and_repeat_with_the_seed() -> None:
    task = resolve_task("copa", None)
    prefix = fewshot_prefix(task, 3, 2, seed=7)
    assert prefix == fewshot_prefix(task, 3, 2, seed=7) != fewshot_prefix(task, 3, 2, seed=8)
    shots = prefix.split("\n\n")[:-1]
    solved = {it.contexts[0] + " " + it.choices[it.gold] for it in task.items}
    assert len(shots) == 2 and set(shots) <= solved
    assert task.items[3].contexts[0] + " " + task.items[3].choices[task.items[3].gold] not in shots
