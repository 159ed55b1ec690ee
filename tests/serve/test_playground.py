"""The web playground (src/kiln/serve/static) in a real browser: Debian's chromium, headless, driven by
Playwright against the session's real `kiln serve` (tests/serve_support.py). Each test uses the page as a
person would and checks what it shows; a screenshot of each feature goes to $KILN_ARTIFACTS (default:
pytest's tmp dir). Everything is seeded or greedy, so what the page shows is compared with the API's own
answers to the same requests.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser_support import api, generate, set_sampling, wait_idle
from playwright.sync_api import expect

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs a chromium executable (Debian's `chromium` package; CI installs it)"
)

TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("KILN_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("playground")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def open_page(browser, base_url: str) -> Iterator:
    """A fresh browser context (empty localStorage) on the playground; fails on any JavaScript error."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto("/")
        page.wait_for_selector("body[data-ready=true]")
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(browser, server) -> Iterator:
    with open_page(browser, server.base_url) as page:
        yield page


def shot(page, artifacts: Path, name: str, *, keep_hover: bool = False) -> None:
    if not keep_hover:
        page.mouse.move(0, 0)
    page.screenshot(path=str(artifacts / f"playground-{name}.png"), full_page=True)


SEEDED = dict(temperature=0.9, top_k=40, top_p=0.95, max_tokens=24, seed=1234)


def test_completion_streams_with_live_stats(page, artifacts):
    page.select_option("#gen-model", "bpe-chat")
    page.fill("#prompt", "ROMEO:")
    set_sampling(page, **SEEDED)
    text = generate(page)
    assert text
    tokens = page.locator("#output-generated [data-testid=token]")
    assert tokens.count() == int(page.inner_text("#stat-tokens")) > 0
    assert re.fullmatch(r"\d+(\.\d)?", page.inner_text("#stat-tps")), page.inner_text("#stat-tps")
    assert float(page.inner_text("#stat-tps")) > 0
    assert re.fullmatch(r"\d+ ms", page.inner_text("#stat-ttft"))
    assert page.inner_text("#stat-finish") in ("length", "stop")
    assert page.inner_text("#output-context") == "ROMEO:"
    assert page.locator("[data-testid=history-item]").count() == 1
    shot(page, artifacts, "completion")


def test_seeded_completion_matches_the_api(page, server):
    page.select_option("#gen-model", "bpe-chat")
    page.fill("#prompt", "JULIET:")
    set_sampling(page, **SEEDED, min_p=0.01, repetition_penalty=1.1)
    shown = generate(page)
    body = {"model": "bpe-chat", "prompt": "JULIET:", **SEEDED, "min_p": 0.01, "repetition_penalty": 1.1}
    assert shown == api(server, "/v1/completions", body)["choices"][0]["text"]


def test_stop_halts_the_stream(page, artifacts):
    # bpe-chat writes its whole 128-token context in a fraction of a second here, so the browser's network
    # is slowed instead (a few KB/s): the full stream would take most of a minute.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": 6000, "uploadThroughput": -1},
    )
    page.select_option("#gen-model", "bpe-chat")
    set_sampling(page, max_tokens=100000, alternatives=20, seed=7, temperature=1)
    page.click("#generate")
    assert page.get_attribute("#gen-status", "data-state") == "running"
    page.wait_for_function("document.querySelectorAll('#output-generated [data-testid=token]').length >= 2")
    assert page.is_enabled("#stop") and page.is_disabled("#generate")
    page.click("#stop")
    assert wait_idle(page) == "stopped"
    count = page.locator("#output-generated [data-testid=token]").count()
    page.wait_for_timeout(800)
    assert page.locator("#output-generated [data-testid=token]").count() == count < 100
    assert page.inner_text("#stat-finish") == "stopped"
    assert page.is_disabled("#stop") and page.is_enabled("#generate")
    shot(page, artifacts, "stopped")


def test_token_view_colours_tooltip_and_branch(page, server, artifacts):
    params = dict(temperature=1, top_k=0, top_p=1, max_tokens=12, seed=5)
    page.select_option("#gen-model", "bpe-chat")
    page.fill("#prompt", "ROMEO:")
    set_sampling(page, **params, alternatives=5)
    generate(page)
    spans = page.locator("#output-generated [data-testid=token]")
    assert spans.count() == 12
    backgrounds = spans.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert all(b not in ("", "transparent", "rgba(0, 0, 0, 0)") for b in backgrounds), backgrounds
    assert len(set(backgrounds)) > 1  # coloured by probability, not one colour for all
    probs = [float(p) for p in spans.evaluate_all("els => els.map(e => e.dataset.prob)")]
    assert all(0 < p <= 1 for p in probs)

    at = 2
    spans.nth(at).hover()
    tip = page.locator("[data-testid=token-tooltip]")
    tip.wait_for(state="visible")
    alts = tip.locator("[data-testid=alternative]")
    assert alts.count() == 5
    assert all(re.search(r"\d%$", t) for t in alts.all_inner_texts())
    shot(page, artifacts, "token-view", keep_hover=True)
    # the first alternative that is not the sampled token and is plain text
    chosen = next(
        i
        for i in range(alts.count())
        if "chosen" not in (alts.nth(i).get_attribute("class") or "")
        and re.fullmatch(r"[ -~]+", alts.nth(i).get_attribute("data-token") or "")
    )
    alt_token = alts.nth(chosen).get_attribute("data-token")
    alt_id = int(alts.nth(chosen).get_attribute("data-id"))
    alts.nth(chosen).click()
    items = page.locator("[data-testid=history-item]")
    expect(items).to_have_count(2)
    assert wait_idle(page) == "done"
    branch = page.inner_text("#output-generated")
    assert branch.startswith(alt_token)
    assert "forced" in page.locator("#output-generated [data-testid=token]").first.get_attribute("class")
    assert items.first.get_attribute("data-kind") == "branch"
    assert page.is_visible("[data-testid=prompt-badge]")

    # the branch is the API's continuation of prompt ids + the tokens before it + the alternative
    body = {"model": "bpe-chat", "prompt": "ROMEO:", **params, "return_token_ids": True}
    first = api(server, "/v1/completions", body)
    ids = first["choices"][0]["prompt_token_ids"] + first["choices"][0]["token_ids"][:at] + [alt_id]
    again = api(server, "/v1/completions", {"model": "bpe-chat", "prompt": ids, **params})
    assert branch == alt_token + again["choices"][0]["text"]
    shot(page, artifacts, "branch")

    # back to the first generation through the history
    items.nth(1).click()
    assert page.inner_text("#output-generated") == first["choices"][0]["text"]
    assert page.input_value("#prompt") == "ROMEO:"


def test_sampling_explainer_follows_the_sliders(page, server, artifacts):
    import torch

    from kiln.generate.sampling import SamplingParams, process_logits

    page.goto("/#explain")
    page.select_option("#ex-model", "bpe-chat")
    page.fill("#ex-prompt", "ROMEO:")
    page.wait_for_selector("#ex-summary:has-text('ROMEO:')")
    bars = page.locator("[data-testid=ex-bar]")

    def after() -> list[float]:
        return [float(x) for x in bars.evaluate_all("els => els.map(e => e.dataset.after)")]

    def kept() -> int:
        return sum(p > 0 for p in after())

    shown = int(page.input_value("#ex-shown"))
    assert bars.count() == shown and kept() == shown
    assert float(page.get_attribute("[data-testid=ex-other]", "data-after")) > 0
    page.fill("#ex-top-k", "3")
    assert kept() == 3
    assert float(page.get_attribute("[data-testid=ex-other]", "data-after")) == 0
    assert page.inner_text("[data-testid=ex-kept]").startswith("3 of 400")
    page.fill("#ex-top-k", "0")
    top_before = float(bars.first.get_attribute("data-before"))
    page.fill("#ex-temperature", "0.5")
    assert after()[0] > top_before
    page.fill("#ex-temperature", "2")
    assert after()[0] < top_before

    # the page's numbers are the server's sampler's, applied to the same logits
    t, k, p, m = 0.7, 12, 0.6, 0.05
    for field, value in (("temperature", t), ("top-k", k), ("top-p", p), ("min-p", m)):
        page.fill(f"#ex-{field}", str(value))
    dist = api(server, "/api/next_token", {"model": "bpe-chat", "prompt": "ROMEO:", "top_n": 400})
    logits = torch.full((1, dist["vocab_size"]), float("-inf"))
    for tok in dist["tokens"]:
        logits[0, tok["id"]] = tok["logit"]
    probs = torch.softmax(process_logits(logits, SamplingParams(temperature=t, top_k=k, top_p=p, min_p=m)), -1)[0]
    ids = [int(i) for i in bars.evaluate_all("els => els.map(e => e.dataset.id)")]
    for i, shown_p in zip(ids, after(), strict=True):
        assert math.isclose(shown_p, float(probs[i]), abs_tol=1e-5), (i, shown_p, float(probs[i]))
    assert kept() == int((probs > 0).sum()) <= k
    shot(page, artifacts, "explainer")


def test_tokenizer_visualiser_side_by_side(page, server, artifacts):
    text = "Hello world, hello tokenizers! naïve café"
    page.goto("/#tokenize")
    page.wait_for_selector("[data-testid=tok-choice][data-tokenizer=cl100k_base]")
    for name in ("char", "cl100k_base", "gpt2"):
        chip = page.locator(f"[data-testid=tok-choice][data-tokenizer='{name}']")
        if chip.get_attribute("aria-pressed") != "true":
            chip.click()
    page.fill("#tok-text", text)
    expected = api(server, "/api/tokenize", {"text": text, "tokenizers": ["char", "cl100k_base", "gpt2"]})
    counts = {r["tokenizer"]: r["count"] for r in expected["results"]}

    def shown(name: str) -> int:
        return int(page.inner_text(f"[data-testid=tok-col][data-tokenizer='{name}'] [data-testid=tok-count]"))

    page.wait_for_function(
        f"document.querySelector(\"[data-tokenizer='char'] [data-testid=tok-count]\")?.textContent === '{len(text)}'"
    )
    assert {n: shown(n) for n in counts} == counts
    assert shown("char") == len(text) > shown("cl100k_base")
    for name in counts:  # the tokens, side by side, spell the text (a character split over tokens shown once)
        col = page.locator(f"[data-testid=tok-col][data-tokenizer='{name}'] [data-testid=viz-token]")
        assert "".join(col.all_inner_texts()) == text
    assert page.locator("[data-testid=tok-col]").count() >= 3
    page.check("#tok-show-ids")
    shot(page, artifacts, "tokenizers")


def test_compare_streams_two_models_side_by_side(page, server, artifacts):
    page.goto("/#compare")
    page.fill("#cmp-prompt", "KING:")
    page.fill("#cmp-max-tokens", "20")
    for side, model in (("a", "bpe-chat"), ("b", "char")):
        page.select_option(f"[data-testid=cmp-model-{side}]", model)
        page.fill(f"[data-testid=cmp-temperature-{side}]", "0.8")
        page.fill(f"[data-testid=cmp-seed-{side}]", "3")
    page.click("#cmp-run")
    page.wait_for_selector("#cmp-run:enabled")
    for side, model in (("a", "bpe-chat"), ("b", "char")):
        assert page.inner_text(f"[data-testid=cmp-status-{side}]") == "done"
        out = page.inner_text(f"[data-testid=cmp-output-{side}]")
        seeded = {"model": model, "prompt": "KING:", "max_tokens": 20, "temperature": 0.8, "seed": 3}
        assert out == api(server, "/v1/completions", seeded)["choices"][0]["text"] != ""
        assert float(page.inner_text(f"[data-testid=cmp-tps-{side}]")) > 0
    shot(page, artifacts, "compare")


def test_chat_and_the_base_model_message(page, artifacts):
    page.click("#mode-chat")
    page.select_option("#gen-model", "bpe-chat")
    assert page.is_hidden("[data-testid=base-model-note]")
    page.fill("#system-prompt", "You are a poet.")
    set_sampling(page, temperature=0, max_tokens=16)
    page.fill("#chat-input", "Speak, friend.")
    page.click("#chat-send")
    assert wait_idle(page) == "done"
    reply = page.locator("[data-testid=chat-msg-assistant]")
    assert reply.count() == 1 and reply.locator("[data-testid=token]").count() > 0
    assert page.inner_text("[data-testid=chat-msg-user]").endswith("Speak, friend.")
    shot(page, artifacts, "chat")

    page.fill("#chat-input", "Hello?")
    page.select_option("#gen-model", "char")
    note = page.locator("[data-testid=base-model-note]")
    assert note.is_visible() and "base model" in note.inner_text() and "kiln sft" in note.inner_text()
    # a base model cannot chat: nothing is sent (no raw API error), the message waits for a chat model
    assert page.is_disabled("#chat-send") and page.is_hidden("[data-testid=gen-error]")
    assert page.input_value("#chat-input") == "Hello?"
    shot(page, artifacts, "chat-base-model")


def test_chat_shows_its_template_regenerates_and_edits(page, server, artifacts):
    """The Chat tab's "Show template" prints the server's rendering; Regenerate replaces the last reply (the same
    text at temperature 0); Edit gives a user message back and drops the conversation after it."""
    page.click("#mode-chat")
    page.select_option("#gen-model", "bpe-chat")
    page.click("#chat-clear")
    page.fill("#system-prompt", "You are a poet.")
    set_sampling(page, temperature=0, max_tokens=12)
    page.fill("#chat-input", "Speak, friend.")
    page.click("#chat-send")
    assert wait_idle(page) == "done"
    first = page.inner_text("[data-testid=chat-msg-assistant] .msg-body")

    page.click("#chat-show-template")
    page.wait_for_selector("[data-testid=chat-template]:visible")
    shown = page.inner_text("[data-testid=chat-template]")
    messages = [
        {"role": "system", "content": "You are a poet."},
        {"role": "user", "content": "Speak, friend."},
        {"role": "assistant", "content": first},
    ]
    rendered = api(server, "/api/chat_template", {"model": "bpe-chat", "messages": messages})
    assert rendered["text"] in shown and "<|im_start|>system\nYou are a poet.<|im_end|>" in rendered["text"]
    shot(page, artifacts, "chat-template")

    page.click("[data-testid=chat-regenerate]")
    assert wait_idle(page) == "done"
    replies = page.locator("[data-testid=chat-msg-assistant]")
    assert replies.count() == 1 and page.inner_text("[data-testid=chat-msg-assistant] .msg-body") == first

    page.click("[data-testid=chat-edit]")
    assert page.input_value("#chat-input") == "Speak, friend."
    assert page.locator("[data-testid=chat-msg-user]").count() == 0 and replies.count() == 0
    page.fill("#chat-input", "Sing, friend.")
    page.click("#chat-send")
    assert wait_idle(page) == "done"
    assert page.inner_text("[data-testid=chat-msg-user] .msg-body") == "Sing, friend." and replies.count() == 1


def test_a_link_opens_the_page_on_a_model_in_chat_mode(browser, server):
    """/?model=NAME&mode=chat (the link the quickstart prints for its fine-tuned model) opens there."""
    with open_page(browser, server.base_url) as page:
        page.goto("/?model=bpe-chat&mode=chat")
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_function("document.querySelector('#gen-model').value === 'bpe-chat'")
        assert page.is_visible("[data-testid=chat-view]")
        page.goto("/?model=char")
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_function("document.querySelector('#gen-model').value === 'char'")


def test_api_errors_are_shown(page):
    page.select_option("#gen-model", "char")
    page.fill("#prompt", "x" * 200)  # longer than char's 64-token context
    page.click("#generate")
    assert wait_idle(page) == "error"
    assert "maximum context length" in page.inner_text("[data-testid=gen-error]")
    assert page.locator("[data-testid=history-item]").count() == 0


def test_api_key_field(browser, serve_models):
    from serve_support import run_server

    with run_server(serve_models, api_key="sesame") as locked, open_page(browser, locked.base_url) as page:
        assert "API key" in page.inner_text("[data-testid=global-error]")
        page.fill("#api-key", "sesame")
        page.press("#api-key", "Enter")
        page.wait_for_selector("#server-status[data-state=ok]")
        assert page.is_hidden("[data-testid=global-error]")
        set_sampling(page, max_tokens=4, seed=1)
        assert generate(page)
        assert page.evaluate("localStorage.getItem('kiln.apiKey')") == "sesame"
