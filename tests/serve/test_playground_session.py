"""The playground's sessions, code and per-model defaults in a real browser (Debian's chromium via Playwright)
against the session's real `kiln serve`: a reload keeps the session, export -> import brings back every
branch, "View code" runs as shown and prints what the page shows, presets and shared links restore settings,
the prompt counter counts what the API encodes, a base model's Chat explains itself, and /docs works offline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit

from browser_support import api, api_get, generate, needs_chromium, open_page, reload, set_sampling, wait_idle
from playwright.sync_api import expect

pytestmark = needs_chromium

SEEDED = dict(temperature=0.9, top_k=40, top_p=0.95, max_tokens=16, seed=1234)


def branch_at(page, index: int) -> str:
    """Branch the shown output at token `index` with its first alternative the model did not pick; returns it."""
    page.locator("#output-generated [data-testid=token]").nth(index).hover()
    alts = page.locator("[data-testid=token-tooltip] [data-testid=alternative]:not(.chosen):enabled")
    token = alts.first.get_attribute("data-token")
    alts.first.click()
    assert wait_idle(page) == "done", page.inner_text("#gen-error")
    return token


def history(page) -> list[dict]:
    """Each history entry (newest first) as the page shows it after selecting it: its output and status line."""
    entries = []
    for i in range(page.locator("[data-testid=history-item]").count()):
        item = page.locator("[data-testid=history-item]").nth(i)
        item.click()
        entries.append(
            {
                "id": item.get_attribute("data-entry"),
                "kind": item.get_attribute("data-kind"),
                "output": page.inner_text("#output-generated"),
                "context": page.inner_text("#output-context"),
                "tokens": page.inner_text("#stat-tokens"),
                "finish": page.inner_text("#stat-finish"),
                "temperature": page.input_value("#temperature"),
            }
        )
    return entries


def make_session(page) -> None:
    """Two generations with different settings, and two branches: one of each."""
    page.select_option("#gen-model", "bpe-chat")
    page.fill("#prompt", "ROMEO:")
    set_sampling(page, **SEEDED)
    generate(page)
    branch_at(page, 2)
    page.fill("#prompt", "JULIET:")
    set_sampling(page, temperature=0.5, max_tokens=10, seed=7)
    generate(page)
    branch_at(page, 1)
    expect(page.locator("[data-testid=history-item]")).to_have_count(4)


def test_a_reload_keeps_the_session_and_each_entry_restores_its_settings(page):
    make_session(page)
    before = history(page)
    assert [e["kind"] for e in before] == ["branch", "completion", "branch", "completion"]
    # each entry brings back its own settings and status line
    assert [e["temperature"] for e in before] == ["0.5", "0.5", "0.9", "0.9"]
    assert before[3]["tokens"] == "16" and before[1]["tokens"] == "10"
    assert all(e["finish"] in ("length", "stop") for e in before)
    page.locator("[data-testid=history-item]").nth(2).click()  # the first branch is shown
    page.fill("#prompt", "an edited prompt")
    page.wait_for_timeout(400)  # the prompt box is saved after typing pauses

    reload(page)
    assert page.input_value("#prompt") == "an edited prompt"
    assert page.get_attribute("[data-testid=history-item].active", "data-entry") == before[2]["id"]
    assert page.inner_text("#output-generated") == before[2]["output"]
    assert page.inner_text("#stat-tokens") == before[2]["tokens"]
    assert history(page) == before


def test_export_then_import_round_trips_every_branch(page, browser, server, tmp_path):
    make_session(page)
    before = history(page)
    with page.expect_download() as download:
        page.click("[data-testid=session-export]")
    exported = tmp_path / "session.json"
    download.value.save_as(exported)
    data = json.loads(exported.read_text())
    assert data["format"] == "kiln-playground-session" and len(data["history"]) == 4

    with open_page(browser, server.base_url) as fresh:
        assert fresh.locator("[data-testid=history-item]").count() == 0
        fresh.set_input_files("[data-testid=session-import]", str(exported))
        expect(fresh.locator("[data-testid=session-note]")).to_contain_text("Imported 4 entries")
        assert history(fresh) == before

        # a file that is not a session is refused with a message saying why; the session stays as it was
        bad = tmp_path / "notes.json"
        broken = {**data, "history": [{**data["history"][0], "tokens": "oops"}]}
        for content, why in (
            ("not json at all", "it is not JSON"),
            (json.dumps({"hello": 1}), "not a kiln playground session"),
            (json.dumps(broken), '"tokens" must be a list'),
        ):
            bad.write_text(content)
            fresh.set_input_files("[data-testid=session-import]", str(bad))
            note = fresh.locator("[data-testid=session-note]")
            expect(note).to_contain_text("Cannot import notes.json")
            assert why in note.inner_text()
            assert fresh.locator("[data-testid=history-item]").count() == 4


def test_view_code_runs_as_shown_and_prints_what_the_page_shows(page, server, tmp_path):
    page.select_option("#gen-model", "bpe-chat")
    page.fill("#prompt", "KING:\nWhat's this?")
    set_sampling(page, **SEEDED, min_p=0.02, repetition_penalty=1.1)
    shown = generate(page)
    page.click("[data-testid=view-code]")
    code = {}
    for lang in ("curl", "python", "javascript"):
        page.click(f"[data-testid=code-lang-{lang}]")
        code[lang] = page.inner_text("[data-testid=code-text]")
    assert page.is_visible("#completion-view") and page.is_visible("#output-card")  # the mode stays as it was

    # Python, with the real openai client
    script = tmp_path / "snippet.py"
    script.write_text(code["python"])
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "from openai import OpenAI" in code["python"]
    assert run.stdout.removesuffix("\n") == shown
    # curl, through a shell, exactly as it would be pasted
    run = subprocess.run(["bash", "-c", code["curl"]], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["choices"][0]["text"] == shown
    # JavaScript, in the page (console.log captured)
    logged = page.evaluate(
        "async (code) => { const out = []; const console = { log: (x) => out.push(x) };"
        " await (new Function('console', `return (async () => { ${code} })()`))(console); return out[0]; }",
        code["javascript"],
    )
    assert logged == shown

    # the copy button puts the code on the clipboard
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("[data-testid=code-copy]")
    expect(page.locator("[data-testid=code-copied]")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == code["javascript"]


def test_presets_save_apply_and_delete(page):
    set_sampling(page, temperature=1.3, top_k=7, max_tokens=33)
    page.fill("[data-testid=preset-name]", "wild")
    page.click("[data-testid=preset-save]")
    set_sampling(page, temperature=0.2, top_k=0, max_tokens=5)
    page.fill("[data-testid=preset-name]", "tame")
    page.click("[data-testid=preset-save]")
    reload(page)  # presets live in this browser
    assert page.locator("[data-testid=preset-select] option").all_inner_texts() == ["tame", "wild"]
    page.select_option("[data-testid=preset-select]", "wild")
    page.click("[data-testid=preset-apply]")
    assert (page.input_value("#temperature"), page.input_value("#top-k"), page.input_value("#max-tokens")) == (
        "1.3",
        "7",
        "33",
    )
    page.click("[data-testid=preset-delete]")
    assert page.locator("[data-testid=preset-select] option").all_inner_texts() == ["tame"]


def test_a_shared_link_opens_with_the_same_model_prompt_and_settings(page, browser, server):
    page.select_option("#gen-model", "char")
    page.fill("#prompt", "To be, or not & to be?")
    set_sampling(page, temperature=0.35, top_p=0.9, seed=42, max_tokens=12, stop_seqs="\\n")
    page.click("[data-testid=share-link]")
    link = page.input_value("[data-testid=share-url]")
    assert link.startswith(server.base_url + "/?")
    parts = urlsplit(link)
    with open_page(browser, server.base_url, f"/?{parts.query}") as other:
        other.wait_for_function("document.querySelector('#gen-model').value === 'char'")
        assert other.input_value("#prompt") == "To be, or not & to be?"
        values = {f: other.input_value(f"#{f}") for f in ("temperature", "top-p", "seed", "max-tokens", "stop-seqs")}
        assert values == {"temperature": "0.35", "top-p": "0.9", "seed": "42", "max-tokens": "12", "stop-seqs": "\\n"}


def test_the_model_offers_its_default_prompt_and_counts_its_tokens(page, server):
    cards = {m["id"]: m for m in api_get(server, "/v1/models")["data"]}
    page.select_option("#gen-model", "bpe-chat")
    page.fill("#prompt", "")
    page.select_option("#gen-model", "char")  # an empty prompt box takes the model's default prompt
    offered = cards["char"]["default_prompt"]
    assert offered == "First Citizen:"  # the first words of Tiny Shakespeare, which it was trained on
    assert page.input_value("#prompt") == offered
    text = "ROMEO:\nBut soft, what light"
    page.fill("#prompt", text)
    for model in ("char", "bpe-chat"):
        page.select_option("#gen-model", model)
        ids = api(server, "/api/next_token", {"model": model, "prompt": text, "top_n": 1})["prompt_ids"]
        expect(page.locator("[data-testid=prompt-tokens]")).to_have_text(
            f"{len(ids)} / {cards[model]['context_length']} tokens"
        )
    page.fill("#prompt", "x" * 70)  # longer than char's 64-token context
    page.select_option("#gen-model", "char")
    expect(page.locator("[data-testid=prompt-tokens]")).to_have_text("70 / 64 tokens")
    assert "over" in page.get_attribute("[data-testid=prompt-tokens]", "class")


def test_chat_with_a_base_model_explains_how_to_make_a_chat_model(page):
    page.click("#mode-chat")
    page.select_option("#gen-model", "char")
    note = page.locator("[data-testid=base-model-note]")
    expect(note).to_be_visible()
    assert "char is a base model" in note.inner_text() and "kiln sft" in note.inner_text()
    assert page.is_disabled("#chat-send") and page.is_disabled("#chat-input")
    assert page.is_hidden("[data-testid=gen-error]")  # no request was sent, so no raw API error
    page.select_option("#gen-model", "bpe-chat")
    assert page.is_hidden("[data-testid=base-model-note]") and page.is_enabled("#chat-send")


def test_docs_work_offline(browser, server):
    """/docs loads Swagger UI from this server: every request that leaves 127.0.0.1 is blocked, and it still renders."""
    context = browser.new_context(base_url=server.base_url)
    outside: list[str] = []

    def only_local(route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    try:
        page = context.new_page()
        page.route("**/*", only_local)
        page.goto("/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("kiln", timeout=20_000)
        expect(page.locator(".opblock-summary-path", has_text="/v1/completions").first).to_be_visible()
    finally:
        context.close()
    assert not outside, outside


def test_the_explainer_and_compare_tabs_start_from_the_model_default_prompt(page, server):
    cards = {m["id"]: m for m in api_get(server, "/v1/models")["data"]}
    page.click("[data-testid=tab-explain]")
    page.select_option("#ex-model", "char")
    expect(page.locator("#ex-prompt")).to_have_value(cards["char"]["default_prompt"])
    page.select_option("#ex-model", "bpe-chat")  # an untouched prompt follows the model
    expect(page.locator("#ex-prompt")).to_have_value(cards["bpe-chat"]["default_prompt"])
    page.fill("#ex-prompt", "KING:")
    page.select_option("#ex-model", "char")  # a typed prompt stays
    expect(page.locator("#ex-prompt")).to_have_value("KING:")
    page.click("[data-testid=tab-compare]")
    first = page.locator(".cmp-col select").first.input_value()
    expect(page.locator("#cmp-prompt")).to_have_value(cards[first]["default_prompt"])
