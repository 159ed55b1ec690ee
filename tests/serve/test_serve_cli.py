"""`kiln serve` as a user runs it: a subprocess that binds 127.0.0.1 and prints the playground URL, and
that refuses to listen beyond this machine without an API key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from helpers import run_cli


def test_non_loopback_bind_needs_an_api_key(serve_models: Path, monkeypatch):
    monkeypatch.delenv("KILN_API_KEY", raising=False)
    rc, _, err = run_cli(["serve", "--models", str(serve_models), "--host", "0.0.0.0"])
    assert rc == 2 and "--api-key" in err


def test_serve_subprocess_answers_and_stops(serve_models: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "KILN_API_KEY": "sekret"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiln", "serve", "--models", str(serve_models), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        first = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in first
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(base + "/health", timeout=2).json()["status"] == "ok"
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert httpx.get(base + "/v1/models").status_code == 401  # the key from $KILN_API_KEY is required
        ok = httpx.get(base + "/v1/models", headers={"Authorization": "Bearer sekret"})
        assert {m["id"] for m in ok.json()["data"]} == {"bpe-chat", "char"}
        page = httpx.get(base + "/")
        assert page.status_code == 200 and "<html" in page.text.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode in (0, -15)
