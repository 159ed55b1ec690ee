"""What the playground's browser tests share: Debian's chromium, a fresh page per test, and the waits.

Playwright drives the system's chromium (no browser download); a page is a fresh browser context (empty
localStorage) on the session's real `kiln serve`, and fails its test on any JavaScript error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs a chromium executable (Debian's `chromium` package; CI installs it)"
)
TIMEOUT_MS = 20_000


@contextmanager
def launch() -> Iterator[Any]:
    """Headless chromium for a module's tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser, base_url: str, path: str = "/", **context_options) -> Iterator[Any]:
    """A fresh browser context on the playground at `path`; fails on any JavaScript error."""
    options = {"viewport": {"width": 1400, "height": 900}, **context_options}
    context = browser.new_context(base_url=base_url, **options)
    context.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path)
        page.wait_for_selector("body[data-ready=true]")
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def reload(page) -> None:
    page.reload()
    page.wait_for_selector("body[data-ready=true]")


def set_sampling(page, **values: str | int | float) -> None:
    """Fill Generate's sampling controls by element id (sliders included)."""
    for field, value in values.items():
        page.fill("#" + field.replace("_", "-"), str(value))


def wait_idle(page) -> str:
    page.wait_for_selector("#gen-status[data-state=idle]")
    return page.inner_text("#gen-status")


def generate(page) -> str:
    page.click("#generate")
    assert wait_idle(page) == "done", page.inner_text("#gen-error")
    return page.inner_text("#output-generated")


def api(server, path: str, body: dict) -> dict:
    r = httpx.post(server.base_url + path, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def api_get(server, path: str) -> dict:
    r = httpx.get(server.base_url + path, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()
