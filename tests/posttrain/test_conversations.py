"""Every SFT data format reads into the same turns; invalid conversations are errors naming file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from helpers import SHARED_DATA
from kiln.posttrain.conversations import ConversationError, read_conversations


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
