"""The playground's accessibility in a real browser (Debian's chromium via Playwright) against the session's real
`kiln serve`: axe-core (from the axe-playwright-python package) finds no serious or critical violation on any
tab in either colour scheme; the tabs are an ARIA tablist driven by the arrow keys; a branch can be made with
the keyboard alone; history entries are reached with Tab; on a phone the prompt comes before the sliders.
"""

from __future__ import annotations

import pytest
from browser_support import generate, needs_chromium, open_page, set_sampling, wait_idle
from playwright.sync_api import expect

pytestmark = needs_chromium

SERIOUS = ("serious", "critical")


def axe_problems(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now, one line each."""
    from axe_playwright_python.sync_playwright import Axe

    result = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:5]]}"
        for v in result.response["violations"]
        if v["impact"] in SERIOUS
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_on_any_tab(browser, server, scheme):
    with open_page(browser, server.base_url, color_scheme=scheme) as page:
        assert page.evaluate(f"matchMedia('(prefers-color-scheme: {scheme})').matches")
        # the Generate tab with what it can show: output tokens, history, the code card, a token's alternatives
        page.select_option("#gen-model", "bpe-chat")
        set_sampling(page, max_tokens=12, seed=3, temperature=1)
        generate(page)
        page.click("[data-testid=view-code]")
        page.locator("#output-generated [data-testid=token]").filter(visible=True).last.hover()
        problems = {"generate (completion)": axe_problems(page)}
        page.click("#mode-chat")
        page.select_option("#gen-model", "char")  # a base model: the chat explanation is shown
        problems["generate (chat, base model)"] = axe_problems(page)
        page.click("#mode-completion")
        tabs = page.locator("[role=tab]")  # every tab the page has, whoever added it
        names = [tabs.nth(i).get_attribute("data-tab") for i in range(tabs.count())]
        assert len(names) >= 4
        for i, name in enumerate(names):
            tabs.nth(i).click()
            expect(page.locator(f"#panel-{name}")).to_be_visible()
            page.wait_for_load_state("networkidle")  # what the tab fetches when shown is on the page
            problems[name] = axe_problems(page)
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}


def test_the_tabs_are_an_aria_tablist_driven_by_the_keyboard(page):
    assert page.get_attribute(".tabs", "role") == "tablist"
    tabs = page.locator("[role=tab]")
    n = tabs.count()
    for i in range(n):
        tab = tabs.nth(i)
        panel = page.locator(f"#{tab.get_attribute('aria-controls')}")
        assert panel.get_attribute("role") == "tabpanel"
        assert panel.get_attribute("aria-labelledby") == tab.get_attribute("id")
    selected = page.locator("[role=tab][aria-selected=true]")
    assert selected.count() == 1 and selected.get_attribute("data-tab") == "generate"
    assert page.locator("[role=tab][tabindex='0']").count() == 1  # one Tab stop: the selected tab

    selected.focus()
    page.keyboard.press("ArrowRight")
    second = tabs.nth(1).get_attribute("data-tab")
    expect(page.locator(f"#panel-{second}")).to_be_visible()
    assert page.evaluate("document.activeElement.dataset.tab") == second
    assert tabs.nth(1).get_attribute("aria-selected") == "true" and tabs.nth(1).get_attribute("tabindex") == "0"
    assert page.is_hidden("#panel-generate")
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.dataset.tab") == tabs.nth(n - 1).get_attribute("data-tab")
    page.keyboard.press("ArrowRight")  # wraps around
    assert page.evaluate("document.activeElement.dataset.tab") == "generate"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Home")
    expect(page.locator("#panel-generate")).to_be_visible()


def focused(page, script: str):
    return page.evaluate(f"(() => {{ const e = document.activeElement; return {script}; }})()")


def tab_until(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the focused element matches `selector` (as a keyboard user would)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused(page, f"e.matches({selector!r})"):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_branching_with_the_keyboard_alone(page):
    page.select_option("#gen-model", "bpe-chat")
    set_sampling(page, max_tokens=10, seed=11, temperature=1, alternatives=5)
    page.focus("#prompt")
    page.keyboard.press("Control+a")
    page.keyboard.type("ROMEO:")
    page.keyboard.press("Control+Enter")
    assert wait_idle(page) == "done"
    first = page.inner_text("#output-generated")

    tab_until(page, "#output-generated .tok")
    assert focused(page, "e.dataset.index") == "0"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert focused(page, "e.dataset.index") == "2"
    page.keyboard.press("Enter")  # the alternatives open, the keyboard on the first the model did not pick
    expect(page.locator("[data-testid=token-tooltip]")).to_be_visible()
    assert focused(page, "e.dataset.testid") == "alternative" and not focused(page, "e.classList.contains('chosen')")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowUp")
    chosen = focused(page, "e.dataset.token")
    page.keyboard.press("Enter")
    assert wait_idle(page) == "done"
    items = page.locator("[data-testid=history-item]")
    expect(items).to_have_count(2)
    assert items.first.get_attribute("data-kind") == "branch"
    tokens = page.locator("#output-generated [data-testid=token]")
    assert tokens.first.inner_text() == chosen and "forced" in tokens.first.get_attribute("class")
    assert page.inner_text("#output-generated").startswith(chosen)

    # "b" branches at once with the most likely alternative the model did not pick
    tab_until(page, "#output-generated .tok")
    page.keyboard.press("ArrowRight")
    assert focused(page, "e.dataset.index") == "1"
    page.keyboard.press("b")
    assert wait_idle(page) == "done"
    expect(items).to_have_count(3)
    assert items.first.get_attribute("data-kind") == "branch"
    assert items.first.get_attribute("aria-label").startswith("#3: branch ↳ branch of #2 at token 2")

    # the history is reached with Tab; Enter goes back to an entry
    tab_until(page, "[data-testid=history-item]")
    while focused(page, "e.dataset.entry") != "1":
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.inner_text("#output-generated") == first
    assert focused(page, "e.dataset.entry") == "1"


def test_a_phone_gets_the_prompt_before_the_sliders(browser, server):
    with open_page(browser, server.base_url, viewport={"width": 390, "height": 844}, is_mobile=True) as page:
        top = {sel: page.locator(sel).bounding_box()["y"] for sel in ("#prompt", "#temperature", ".history-card")}
        assert top["#prompt"] < top["#temperature"] < top[".history-card"]
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the screen
        for sel in ("#prompt", "#generate", "#temperature"):
            box = page.locator(sel).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (sel, box)
