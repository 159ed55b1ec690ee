"""Every SFT data format reads into the same turns; invalid conversations are errors naming file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from helpers import SHARED_DATA
from kiln.posttrain.conversations import ConversationError, read_conversations
from kiln.posttrain.rl_data import read_prompts


def write(path: Path, records: list) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_every_format_gives_user_then_assistant_turns(tmp_path):
    records = [
        {"messages": [{"role": "developer", "content": "S"}, {"role": "user", "content": "Q"},
                      {"role": "assistant", "content": "A"}]},
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
        {"instruction": "Q", "input": "more", "output": "A"},
        {"instruction": "Q", "input": "", "output": "A"},
        {"prompt": "Q", "completion": "A"},
        {"question": "Q", "answer": "A"},
    ]  # fmt: skip
    convs = read_conversations([write(tmp_path / "d.jsonl", records)])
    assert [c.turns for c in convs] == [
        (("system", "S"), ("user", "Q"), ("assistant", "A")),
        (("user", "Q"), ("assistant", "A")),
        (("user", "Q\n\nmore"), ("assistant", "A")),
        (("user", "Q"), ("assistant", "A")),
        (("user", "Q"), ("assistant", "A")),
        (("user", "Q"), ("assistant", "A")),
    ]
    assert convs[2].source.endswith("d.jsonl:3")


def test_json_arrays_and_gzip_read_too(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"prompt": "Q", "completion": "A"}]), encoding="utf-8")
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(b'{"question": "Q", "answer": "A"}\n'))
    assert len(read_conversations([tmp_path / "a.json", tmp_path / "b.jsonl.gz"])) == 2


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({"messages": [{"role": "user", "content": "Q"}]}, "no assistant turn"),
        ({"messages": [{"role": "assistant", "content": "A"}, {"role": "user", "content": "Q"},
                       {"role": "assistant", "content": "A"}]}, "roles out of order"),
        ({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"},
                       {"role": "user", "content": "Q2"}]}, "ends with a user turn"),
        ({"messages": [{"role": "robot", "content": "Q"}]}, "unknown role"),
        ({"text": "just text"}, "unknown record format"),
        ({"prompt": "Q", "completion": 3}, "completion must be a string"),
        ({"prompt": "Q", "completion": "A", "words": "dog"}, "'words' must be a list"),
        ({"prompt": "Q", "completion": "A", "words": ["dog", ""]}, "'words' must be a list of non-empty"),
    ],
)  # fmt: skip
def test_invalid_conversations_name_file_and_line(tmp_path, record, needle):
    path = write(tmp_path / "bad.jsonl", [{"prompt": "ok", "completion": "ok"}, record])
    with pytest.raises(ConversationError, match=needle) as e:
        read_conversations([path])
    assert f"{path}:2" in str(e.value)


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "Q", "completion": "A"}\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(ConversationError, match=f"{path}:2: not valid JSON"):
        read_conversations([path])


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED_DATA / "sft").is_dir(), reason="../shared/data/sft is absent")
def test_the_shared_sft_files_all_read():
    sft = SHARED_DATA / "sft"
    assert len(read_conversations([sft / "alpaca_en_demo.json"])) == 999
    assert len(read_conversations([sft / "gsm8k_train.jsonl"])) == 7473
    seeds = read_conversations([sft / "alpaca_seed_tasks.jsonl"])
    first = json.loads((sft / "alpaca_seed_tasks.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert len(seeds) == 175
    assert seeds[0].turns == (("user", first["instruction"]), ("assistant", first["instances"][0]["output"]))


def test_a_self_instruct_task_is_one_conversation_per_instance(tmp_path):
    task = {"id": "seed_task_9", "name": "n", "instruction": "Q", "is_classification": False,
            "instances": [{"input": "", "output": "A1"}, {"input": "x", "output": "A2"}]}  # fmt: skip
    convs = read_conversations([write(tmp_path / "seed.jsonl", [task])])
    assert [c.turns for c in convs] == [(("user", "Q"), ("assistant", "A1")), (("user", "Q\n\nx"), ("assistant", "A2"))]
    assert [c.source.rsplit("/", 1)[1] for c in convs] == ["seed.jsonl:1 instance 1", "seed.jsonl:1 instance 2"]
    prompts = read_prompts([tmp_path / "seed.jsonl"])
    assert [p["prompt_turns"] for p in prompts] == [[("user", "Q")], [("user", "Q\n\nx")]]


@pytest.mark.parametrize(
    ("instances", "message"),
    [([], "seed.jsonl:1: 'instances' must be a non-empty list"),
     ("A", "seed.jsonl:1: 'instances' must be a non-empty list"),
     ([{"input": "", "output": "A"}, {"input": ""}], "seed.jsonl:1 instance 2: output must be a string")],
)  # fmt: skip
def test_a_bad_self_instruct_task_names_its_line_and_instance(tmp_path, instances, message):
    path = write(tmp_path / "seed.jsonl", [{"instruction": "Q", "instances": instances}])
    with pytest.raises(ConversationError, match=message):
        read_conversations([path])
