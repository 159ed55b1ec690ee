"""Serve fixtures: two tiny checkpoints trained for real, and `kiln serve` on them on a free 127.0.0.1 port."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def serve_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny checkpoints trained for real by `kiln train` (see tests/serve_support.py)."""
    from serve_support import build_models

    return build_models(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="session")
def server(serve_models: Path):
    """`kiln serve` on those models, on a free 127.0.0.1 port, shared by the tests of a session."""
    from serve_support import run_server

    with run_server(serve_models) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium (Playwright), one per test module; the browser tests skip where it is absent."""
    from browser_support import launch

    with launch() as b:
        yield b


@pytest.fixture
def page(browser, server):
    """A fresh page on the session server's playground (fails on any JavaScript error)."""
    from browser_support import open_page

    with open_page(browser, server.base_url) as page:
        yield page
