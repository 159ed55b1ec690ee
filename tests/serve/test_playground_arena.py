"""The Arena tab end to end: in a real browser (Playwright + Debian's chromium) against a real `kiln serve` on
three models (two can chat), a person runs blind battles, completion and chat, and votes; the page's export gives
the DPO JSONL of exactly those votes, and the real `kiln dpo` trains on it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import httpx
import pytest
from arena_support import arena_models
from playwright.sync_api import expect
from serve_support import run_server
from test_playground import CHROMIUM, artifacts, open_page, shot  # noqa: F401  (artifacts: a fixture)

from helpers import run_cli

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium executable (Debian's `chromium` package)")

# (mode, prompt, vote): two completion battles between any two models, two chat battles between the chat models
BATTLES = [("completion", "ROMEO:", "a"), ("completion", "ROMEO:", "b"), ("chat", "Say apple.", "b"),
           ("chat", "Say river.", "tie")]  # fmt: skip
SYSTEM = "Be brief."


def expected_pair(mode: str, prompt: str, answers: dict[str, str], winner: str) -> dict | None:
    """The DPO record a vote should export (formats.md), built here from what the page showed."""
    if winner not in ("a", "b") or answers["a"] == answers["b"]:
        return None
    chosen, rejected = answers[winner], answers["b" if winner == "a" else "a"]
    if mode == "completion":
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    return {
        "prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def test_arena_votes_export_and_train_with_kiln_dpo(browser, artifacts, serve_models: Path, tmp_path: Path):  # noqa: F811
    models = arena_models(serve_models, tmp_path)
    with run_server(models, arena_dir=tmp_path / "votes") as server, open_page(browser, server.base_url) as page:
        page.click("[data-testid=tab-arena]")
        expect(page.get_by_test_id("panel-arena")).to_be_visible()
        expect(page.get_by_test_id("arena-board")).to_contain_text("No votes yet.")
        # A base model cannot chat: picking it turns chat off; two random models can (two chat models are served).
        page.select_option("[data-testid=arena-model-1]", "char")
        expect(page.get_by_test_id("arena-mode-chat")).to_be_disabled()
        page.select_option("[data-testid=arena-model-1]", "")
        expect(page.get_by_test_id("arena-mode-chat")).to_be_enabled()
        page.fill("[data-testid=arena-max-tokens]", "12")

        want, votes = [], []
        for i, (mode, prompt, winner) in enumerate(BATTLES):
            page.click(f"[data-testid=arena-mode-{mode}]")
            if mode == "chat":
                page.fill("[data-testid=arena-system]", SYSTEM)
            page.fill("[data-testid=arena-prompt]", prompt)
            page.fill("[data-testid=arena-seed]", str(i))
            page.click("[data-testid=arena-run]")
            expect(page.get_by_test_id("arena-vote-a")).to_be_enabled()
            answers = {s: page.get_by_test_id(f"arena-answer-{s}").text_content() for s in "ab"}
            for s in "ab":  # blind until the vote
                expect(page.get_by_test_id(f"arena-name-{s}")).to_have_text("")
            page.click(f"[data-testid=arena-vote-{winner}]")
            expect(page.get_by_test_id("arena-name-a")).not_to_have_text("")
            names = [page.get_by_test_id(f"arena-name-{s}").text_content() for s in "ab"]
            assert names[0] != names[1] and (mode == "completion" or "char" not in names)
            votes.append(names)
            pair = expected_pair(mode, prompt, answers, winner)
            want += [pair] if pair else []

        assert len(want) >= 2, "kiln dpo needs a pair to hold out and one to train on"
        assert {type(w["prompt"]) for w in want} == {str, list}  # text pairs and chat pairs, both go to kiln dpo
        expect(page.get_by_test_id("arena-summary")).to_have_text(f"{len(BATTLES)} votes · {len(want)} DPO pairs")
        board = httpx.get(server.base_url + "/api/arena/leaderboard").json()
        assert {m for names in votes for m in names} == {r["model"] for r in board["models"]}
        expect(page.locator("#arena-board-rows td.model")).to_have_text([r["model"] for r in board["models"]])
        shot(page, artifacts, "arena")

        with page.expect_download() as download:
            page.click("[data-testid=arena-export]")
        exported = tmp_path / "arena-dpo.jsonl"
        download.value.save_as(exported)
        # The file the page saved is the API's export, and holds exactly the decisive votes cast above.
        assert exported.read_text(encoding="utf-8") == httpx.get(server.base_url + "/api/arena/export").text
        assert [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()] == want

    out = tmp_path / "dpo"
    argv = ["dpo", str(serve_models / "bpe-chat"), str(exported), "device=cpu", "precision=fp32", "threads=1",
            "batch_size=2", "max_steps=3", "eval_interval=3", "warmup_steps=0", "log_interval=1", "lr=1e-4",
            f"out_dir={out}"]  # fmt: skip
    rc, text, err = run_cli(argv)
    assert rc == 0, err
    # kiln dpo's opening line counts the pairs it read: every exported pair, no other.
    split = re.search(r"(\d+) train pairs, (\d+) held out", text)
    assert split and int(split[1]) + int(split[2]) == len(want), text
    assert (out / "checkpoints" / "step_0000003" / "model.safetensors").is_file()
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1, 2, 3] and "val_pref_acc" in logged[-1]
    assert logged[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-5)  # the policy starts as its reference
