"""Serve as a stage: `ServeConfig` (documented fields, validate, the environment's fallbacks), `run` (the
loopback rule, the URLs it prints, the summary it returns when the server stops), and the static files the
playground's ES modules need."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from kiln.serve import ServeConfig, ServeSummary, create_app, run
from kiln.stage import field_docs

STATIC = Path(__file__).resolve().parents[2] / "src" / "kiln" / "serve" / "static"


def test_every_field_is_documented():
    docs = field_docs(ServeConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(ServeConfig)}
    assert all(docs.values()), [name for name, doc in docs.items() if not doc]
    for name in ("models", "host", "port", "api_key", "max_batch", "max_queue", "max_memory_gb", "vocab_dir"):
        assert name in docs  # the CLI's --option names, which scripts and tests use


def test_defaults_are_the_commands():
    c = ServeConfig(models=Path("m"))
    assert (c.host, c.port, c.api_key, c.max_batch, c.max_queue) == ("127.0.0.1", 8000, None, 32, 256)
    assert (c.max_memory_gb, c.max_body_bytes, c.vocab_dir, c.log_level) == (4.0, 4 << 20, None, "warning")


@pytest.mark.parametrize(
    ("field", "value"),
    [("port", 70000), ("port", -1), ("max_batch", 0), ("max_queue", 0), ("max_body_bytes", 0),
     ("max_memory_gb", 0.0), ("log_level", "loud"), ("host", "")],
)  # fmt: skip
def test_validate_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        dataclasses.replace(ServeConfig(models=Path("m")), **{field: value}).validate()


def test_resolved_takes_unset_fields_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("KILN_API_KEY", "from-env")
    monkeypatch.setenv("KILN_VOCAB_DIR", str(tmp_path))
    r = ServeConfig(models=tmp_path, log_level="INFO").resolved()
    assert (r.api_key, r.vocab_dir, r.log_level) == ("from-env", tmp_path, "info")
    given = ServeConfig(models=tmp_path, api_key="given", vocab_dir=Path("v")).resolved()
    assert (given.api_key, given.vocab_dir) == ("given", Path("v"))


def test_run_refuses_a_public_host_without_a_key(serve_models, monkeypatch):
    monkeypatch.delenv("KILN_API_KEY", raising=False)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("must not start"))
    with pytest.raises(ValueError, match="--api-key"):
        run(ServeConfig(models=serve_models, host="0.0.0.0"))


def test_run_serves_then_summarises(serve_models, monkeypatch, capsys):
    """`run` with uvicorn replaced by a client that makes a few requests, as users would, then stops."""
    seen = {}

    def fake_uvicorn(app, host, port, log_level, **limits):
        seen.update(host=host, port=port, log_level=log_level)
        # the connection limits: a deadline for reading each request, and the keep-alive timeout
        assert limits["http"].read_timeout_s == 10.0 and limits["timeout_keep_alive"] == 10
        with TestClient(app) as client:
            assert client.get("/health").status_code == 200
            headers = {"Authorization": "Bearer k"}
            body = {"model": "char", "prompt": "ab", "max_tokens": 3, "ignore_eos": True}
            assert client.post("/v1/completions", json=body, headers=headers).status_code == 200
            assert client.get("/v1/models").status_code == 401

    monkeypatch.setattr(uvicorn, "run", fake_uvicorn)
    summary = run(ServeConfig(models=serve_models, host="0.0.0.0", port=8123, api_key="k", log_level="ERROR"))
    assert seen == {"host": "0.0.0.0", "port": 8123, "log_level": "error"}
    assert capsys.readouterr().out.startswith(
        "kiln serve: playground http://0.0.0.0:8123/   API http://0.0.0.0:8123/v1"
    )
    assert isinstance(summary, ServeSummary)
    assert (summary.requests, summary.tokens_generated, summary.exit_code) == (3, 3, 0)
    assert re.fullmatch(r"kiln serve: stopped after \d+ s: 3 requests answered, 3 tokens generated", summary.render())
    assert summary.to_json()["requests"] == 3


def test_ctrl_c_ends_with_a_summary_and_130(serve_models, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(uvicorn, "run", interrupted)
    summary = run(ServeConfig(models=serve_models, host="::1"))
    assert summary.interrupted and summary.exit_code == 130 and summary.requests == 0


def test_the_page_loads_its_modules_as_javascript(server):
    page = httpx.get(server.base_url + "/").text
    entry = re.search(r'<script type="module" src="static/([\w-]+\.js)"', page)
    assert entry, "the page must load its code as an ES module"
    modules = sorted(p.name for p in STATIC.glob("*.js"))
    assert entry.group(1) in modules
    for name in modules:
        r = httpx.get(f"{server.base_url}/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].split(";")[0] == "text/javascript", name
        for imported in re.findall(r'from "\./([\w-]+\.js)"', r.text):
            assert imported in modules, f"{name} imports {imported}, which is not served"


def test_app_state_is_one_object(serve_models):
    app = create_app(ServeConfig(models=serve_models))
    server = app.state.server
    assert server.registry is app.state.registry and server.config.models == serve_models
