"""The Arena tab end to end: in a real browser (Playwright + Debian's chromium) against a real `kiln serve`, a
person runs blind battles and votes; the page's export gives the DPO JSONL of exactly those votes, and the real
`kiln dpo` trains on it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect
from serve_support import run_server
from test_playground import CHROMIUM, artifacts, browser, open_page, shot  # noqa: F401  (fixtures)

from helpers import run_cli

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium executable (Debian's `chromium` package)")

VOTES = ["a", "b", "a", "tie"]
PROMPT = "ROMEO:"


def test_arena_votes_export_and_train_with_kiln_dpo(browser, artifacts, serve_models: Path, tmp_path: Path):  # noqa: F811
    with run_server(serve_models, arena_dir=tmp_path / "arena") as server, open_page(browser, server.base_url) as page:
        page.click("[data-testid=tab-arena]")
        expect(page.get_by_test_id("panel-arena")).to_be_visible()
        # The served models are a chat model and a base model: a chat battle between them is impossible.
        expect(page.get_by_test_id("arena-mode-chat")).to_be_disabled()
        expect(page.get_by_test_id("arena-board")).to_contain_text("No votes yet.")
        page.fill("[data-testid=arena-prompt]", PROMPT)
        page.fill("[data-testid=arena-max-tokens]", "12")

        want, shown = [], []
        for i, winner in enumerate(VOTES):
            page.fill("[data-testid=arena-seed]", str(i))
            page.click("[data-testid=arena-run]")
            expect(page.get_by_test_id("arena-vote-a")).to_be_enabled()
            answers = {s: page.get_by_test_id(f"arena-answer-{s}").text_content() for s in "ab"}
            for s in "ab":  # blind until the vote
                expect(page.get_by_test_id(f"arena-name-{s}")).to_have_text("")
            page.click(f"[data-testid=arena-vote-{winner}]")
            expect(page.get_by_test_id("arena-name-a")).not_to_have_text("")
            names = {s: page.get_by_test_id(f"arena-name-{s}").text_content() for s in "ab"}
            assert sorted(names.values()) == ["bpe-chat", "char"]
            shown.append((names, winner))
            if winner in "ab" and answers["a"] != answers["b"]:
                lose = "b" if winner == "a" else "a"
                want.append({"prompt": PROMPT, "chosen": answers[winner], "rejected": answers[lose]})

        assert len(want) >= 2, "kiln dpo needs a pair to hold out and one to train on"
        expect(page.get_by_test_id("arena-summary")).to_have_text(f"{len(VOTES)} votes · {len(want)} DPO pairs")
        rows = page.locator("#arena-board-rows tr")
        expect(rows).to_have_count(2)
        wins = {m: sum(1 for names, w in shown if w in "ab" and names[w] == m) for m in ("bpe-chat", "char")}
        leader = rows.nth(0).locator("td.model").text_content()
        assert wins[leader] == max(wins.values())  # two models: the one with more wins leads

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
