"""Helpers of the Dashboard and Data tab browser tests: Debian's chromium through Playwright, and a page that fails
the test on any JavaScript error (the same setup as test_playground.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
TIMEOUT_MS = 20_000


@contextmanager
def chromium() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser, base_url: str, path: str = "/") -> Iterator:
    """A fresh browser context on the playground at `path`; fails on any JavaScript error."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1400, "height": 900})
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
