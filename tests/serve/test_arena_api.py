"""The arena's API through real HTTP against a real `kiln serve` (three tiny models: two that chat, one base):
blind battles whose answers equal what /v1/completions and /v1/chat/completions give the revealed models, random
sides, votes that survive a restart, the leaderboard and DPO export computed from them, and the 400s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from arena_support import arena_models as copy_models
from serve_support import run_server

from kiln.posttrain.pairs import read_pairs

SETTINGS = {"max_tokens": 8, "temperature": 0.9, "top_k": 20, "seed": 5}


@pytest.fixture(scope="module")
def arena_models(serve_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three models, two of them able to chat (arena_support.py)."""
    return copy_models(serve_models, tmp_path_factory.mktemp("arena"))


@pytest.fixture(scope="module")
def arena(arena_models: Path) -> Iterator:
    with run_server(arena_models) as running:
        yield running


def post(server, path: str, body: dict, status: int = 200) -> dict:
    r = httpx.post(server.base_url + path, json=body, timeout=60)
    assert r.status_code == status, r.text
    return r.json()


def get(server, path: str) -> httpx.Response:
    r = httpx.get(server.base_url + path, timeout=60)
    assert r.status_code == 200, r.text
    return r


def battle_and_vote(server, winner: str, **body) -> tuple[dict, dict]:
    b = post(server, "/api/arena/battle", {**SETTINGS, **body})
    return b, post(server, "/api/arena/vote", {"battle_id": b["battle_id"], "winner": winner})


def test_answers_are_the_openai_routes_answers_of_the_revealed_models(arena):
    b, v = battle_and_vote(arena, "a", prompt="ROMEO:", models=["bpe-chat", "char"])
    assert set(b["answers"]) == {"a", "b"} and "model" not in json.dumps(b)  # blind until the vote
    assert sorted(v["models"].values()) == ["bpe-chat", "char"]
    for side in "ab":
        ref = post(arena, "/v1/completions", {"model": v["models"][side], "prompt": "ROMEO:", **SETTINGS})
        assert b["answers"][side] == ref["choices"][0]["text"]

    b, v = battle_and_vote(arena, "b", prompt="Say apple.", mode="chat", system="Be brief.")
    assert sorted(v["models"].values()) == ["bpe-chat", "bpe-chat-2"]  # a random pair, among the chat models
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say apple."}]
    for side in "ab":
        ref = post(arena, "/v1/chat/completions", {"model": v["models"][side], "messages": messages, **SETTINGS})
        assert b["answers"][side] == ref["choices"][0]["message"]["content"]


def test_a_streamed_battle_sends_each_sides_tokens_then_the_battle(arena):
    body = {"prompt": "ROMEO:", "models": ["bpe-chat", "char"], **SETTINGS, "stream": True}
    with httpx.stream("POST", arena.base_url + "/api/arena/battle", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    events = [json.loads(d) for d in data[:-1]]
    *tokens, last = events
    streamed = {s: "".join(e["text"] for e in tokens if e["side"] == s) for s in "ab"}
    assert streamed == last["answers"] and all(e["side"] in "ab" for e in tokens)
    v = post(arena, "/api/arena/vote", {"battle_id": last["battle_id"], "winner": "b"})
    for side in "ab":  # the same answers as unstreamed, and as the OpenAI route's
        ref = post(arena, "/v1/completions", {"model": v["models"][side], "prompt": "ROMEO:", **SETTINGS})
        assert streamed[side] == ref["choices"][0]["text"]
    bad = httpx.post(arena.base_url + "/api/arena/battle", json={**body, "models": ["char", "nope"]}, timeout=60)
    assert bad.status_code == 404 and bad.json()["error"]["param"] == "models"  # refused before the stream starts


def test_the_server_assigns_sides_at_random(arena):
    seen = set()
    for _ in range(12):  # both orders with probability 1 - 2 / 2**12
        b = post(arena, "/api/arena/battle", {"prompt": "a", "models": ["bpe-chat", "char"], "max_tokens": 1})
        seen.add(post(arena, "/api/arena/vote", {"battle_id": b["battle_id"], "winner": "tie"})["models"]["a"])
    assert seen == {"bpe-chat", "char"}


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/api/arena/vote", {"battle_id": "battle-nope", "winner": "a"}, "battle_id"),
        ("/api/arena/vote", {"battle_id": "x", "winner": "model_a"}, "winner"),
        ("/api/arena/battle", {"prompt": "x" * 8001}, "prompt"),
        ("/api/arena/battle", {"prompt": "x", "max_tokens": 513}, "max_tokens"),
        ("/api/arena/battle", {"prompt": "x", "temperature": -1}, "temperature"),
        ("/api/arena/battle", {"prompt": "x", "models": ["char", "char"]}, "models"),
        ("/api/arena/battle", {"prompt": "x", "models": ["char"]}, "models"),
        ("/api/arena/battle", {"prompt": "x", "mode": "chat", "models": ["bpe-chat", "char"]}, "mode"),
    ],
)
def test_bad_requests_are_400s_naming_the_param(arena, path, body, param):
    err = post(arena, path, body, status=400)["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_a_battle_takes_one_vote(arena):
    b, _ = battle_and_vote(arena, "tie", prompt="x", max_tokens=1)
    err = post(arena, "/api/arena/vote", {"battle_id": b["battle_id"], "winner": "a"}, status=400)["error"]
    assert (err["param"], err["code"]) == ("battle_id", "already_voted")
    r = httpx.get(arena.base_url + "/api/arena/export?mode=both", timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "mode"


def test_votes_survive_a_restart_and_feed_the_leaderboard_and_export(arena_models, tmp_path):
    votes_dir = tmp_path / "votes"
    want = []
    with run_server(arena_models, arena_dir=votes_dir) as server:
        for winner in ("a", "b", "a", "tie", "both_bad"):
            b, _ = battle_and_vote(server, winner, prompt="ROMEO:", models=["bpe-chat", "char"])
            if winner in ("a", "b") and b["answers"]["a"] != b["answers"]["b"]:
                lose = "b" if winner == "a" else "a"
                want.append({"prompt": "ROMEO:", "chosen": b["answers"][winner], "rejected": b["answers"][lose]})
            last = b["battle_id"]
        before = get(server, "/api/arena/leaderboard").json()
    assert (votes_dir / "votes.jsonl").is_file()

    with run_server(arena_models, arena_dir=votes_dir) as server:  # a new server (app and store), same directory
        board = get(server, "/api/arena/leaderboard").json()
        assert board == before and board["votes"] == 5 and board["pairs"] == len(want)
        rows = {r["model"]: r for r in board["models"]}
        assert set(rows) == {"bpe-chat", "char"} and rows["bpe-chat"]["votes"] == 5
        assert rows["bpe-chat"]["wins"] == rows["char"]["losses"] and rows["bpe-chat"]["ties"] == 2
        for r in rows.values():
            assert r["ci_low"] <= r["rating"] <= r["ci_high"]
        leader = board["models"][0]
        assert leader["wins"] >= board["models"][1]["wins"]  # two models: the one with more wins rates higher

        export = get(server, "/api/arena/export")
        assert export.headers["content-disposition"].startswith("attachment")
        assert [json.loads(line) for line in export.text.splitlines()] == want
        assert get(server, "/api/arena/export?mode=chat").text == ""
        err = post(server, "/api/arena/vote", {"battle_id": last, "winner": "a"}, status=400)["error"]
        assert err["code"] == "already_voted"  # the restarted server knows the votes it did not see

    path = tmp_path / "pairs.jsonl"
    path.write_text(export.text, encoding="utf-8")
    pairs = read_pairs([path])  # what `kiln dpo` reads
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        ((("user", "ROMEO:"),), w["chosen"], w["rejected"]) for w in want
    ]


def test_a_votes_file_that_cannot_be_written_is_a_503_and_the_battle_stays_votable(arena_models, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with run_server(arena_models, arena_dir=blocker / "arena") as server:
        b = post(server, "/api/arena/battle", {"prompt": "x", "max_tokens": 1})
        r = httpx.post(server.base_url + "/api/arena/vote", json={"battle_id": b["battle_id"], "winner": "a"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "votes_not_writable"
        assert str(tmp_path) not in r.text  # the path goes to the server's log, not to the client
        r = httpx.get(server.base_url + "/api/arena/leaderboard")
        assert r.status_code == 503 and r.json()["error"]["code"] == "votes_unreadable"
        blocker.unlink()  # the operator fixes it: the same battle can now be voted on
        post(server, "/api/arena/vote", {"battle_id": b["battle_id"], "winner": "a"})
        assert get(server, "/api/arena/leaderboard").json()["votes"] == 1
