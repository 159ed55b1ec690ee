"""The arena's votes file: concurrent votes land whole, one line each; a torn last line is skipped, not fatal; a
new store on the same directory knows which battles were voted on."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from kiln.serve.arena.store import ArenaStore, Battle, VoteError, new_battle_id


def battle(i: int) -> Battle:
    return Battle(new_battle_id(), "completion", f"prompt {i} " + "é" * 2000, None, "m1", "m2", "x" * i, "y", {})


def test_concurrent_votes_are_whole_lines(tmp_path):
    store = ArenaStore(tmp_path / "arena")
    battles = [battle(i) for i in range(64)]
    for b in battles:
        store.add(b)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda b: store.vote(b.id, "a"), battles))
    lines = (tmp_path / "arena" / "votes.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(b.id for b in battles)


def test_a_torn_line_is_skipped_and_a_new_store_remembers_the_votes(tmp_path):
    store = ArenaStore(tmp_path)
    first, second = battle(1), battle(2)
    for b in (first, second):
        store.add(b)
        store.vote(b.id, "tie")
    with (tmp_path / "votes.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"id": "battle-torn", "winner": "a", "mod')  # a write cut short
    again = ArenaStore(tmp_path)
    assert [v["id"] for v in again.votes()] == [first.id, second.id]
    with pytest.raises(VoteError) as e:
        again.vote(first.id, "a")
    assert e.value.reason == "already_voted"
    with pytest.raises(VoteError) as e:
        again.vote("battle-unknown", "a")
    assert e.value.reason == "unknown_battle"
    third = battle(3)
    again.add(third)
    again.vote(third.id, "b")  # after the torn line, on a line of its own
    assert [v["id"] for v in ArenaStore(tmp_path).votes()] == [first.id, second.id, third.id]
