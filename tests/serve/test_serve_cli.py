"""`kiln serve` as a user runs it: a subprocess that binds 127.0.0.1 and prints the playground URL, and
that refuses to listen beyond this machine without an API key."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from helpers import run_cli
from kiln.cli import main


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


# ------------------------------------------------------------------------- messages: no models, a busy port


def test_empty_models_directory_says_what_it_looked_for_and_how_to_make_a_model(tmp_path: Path):
    (tmp_path / "notes").mkdir()  # a directory, but no checkpoint anywhere below
    rc, out, err = run_cli(["serve", "--models", str(tmp_path)])
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"no models in {tmp_path}" in err and "config.json" in err
    assert "kiln quickstart" in err and "kiln train" in err


def test_busy_port_is_one_line_naming_the_port_and_how_to_pick_another(serve_models: Path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc, out, err = run_cli(["serve", "--models", str(serve_models), "--port", str(port)])
    assert rc == 2 and out == ""  # nothing printed as if it served: no URL, no uvicorn lines
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"port {port} on 127.0.0.1 is in use" in err and f"port={port + 1}" in err


# ---------------------------------------------------------------------------------------------- access log


class _Lines(logging.Handler):
    """The `kiln.serve` logger's messages."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_access_log_has_one_line_per_request_with_model_status_tokens_and_time(serve_models: Path):
    from serve_support import run_server

    log = logging.getLogger("kiln.serve")
    lines, level = _Lines(), log.level
    log.addHandler(lines)
    log.setLevel(logging.INFO)
    try:
        with run_server(serve_models) as srv:
            body = {"model": "char", "prompt": "ROMEO:", "max_tokens": 7, "ignore_eos": True}
            assert httpx.post(srv.base_url + "/v1/completions", json=body, timeout=60).status_code == 200
            with httpx.stream("POST", srv.base_url + "/v1/completions", json={**body, "stream": True}) as r:
                assert r.status_code == 200 and sum(1 for _ in r.iter_lines()) > 7
            missing = httpx.post(srv.base_url + "/v1/completions", json={**body, "model": "nope"})
            assert missing.status_code == 404
            assert httpx.get(srv.base_url + "/health").status_code == 200
            deadline = time.monotonic() + 10  # the last line is written just after the response is sent
            while sum("/health" in line for line in lines.lines) < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        log.removeHandler(lines)
        log.setLevel(level)
    loads = [line for line in lines.lines if line.startswith("loaded model")]
    assert len(loads) == 1 and re.fullmatch(r"loaded model char: [\d,]+ parameters on cpu in \d+\.\d\d s", loads[0])
    access = [line for line in lines.lines if not line.startswith("loaded model")]
    prompt = len("ROMEO:")  # char-level: one token per character
    pattern = rf"POST /v1/completions model=char 200 tokens={prompt}\+7 \d+ ms"
    assert len(access) == 4, access
    assert re.fullmatch(pattern, access[0]) and re.fullmatch(pattern, access[1])  # streamed: counted in full
    assert re.fullmatch(r"POST /v1/completions model=nope 404 \d+ ms", access[2])
    assert re.fullmatch(r"GET /health 200 \d+ ms", access[3])


def wait_healthy(port: int, proc: subprocess.Popen) -> str:
    """The base URL of the `kiln serve` process `proc` on `port`, once its /health answers (30 s at most)."""
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(base + "/health", timeout=2)
            return base
        except httpx.TransportError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)


def test_serve_subprocess_logs_each_request_once_replacing_uvicorns_access_log(serve_models: Path, tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err_path = tmp_path / "stderr.txt"
    argv = [sys.executable, "-m", "kiln", "serve", "--models", str(serve_models), "--port", str(port)]
    with err_path.open("w") as err_file:
        # log_level=info would make uvicorn print its own access line per request, were it not replaced
        proc = subprocess.Popen([*argv, "--log-level", "info"], stdout=subprocess.PIPE, stderr=err_file, text=True)
        try:
            assert f"http://127.0.0.1:{port}/" in proc.stdout.readline()
            base = wait_healthy(port, proc)
            body = {"model": "char", "prompt": "ab", "max_tokens": 3, "ignore_eos": True}
            assert httpx.post(base + "/v1/completions", json=body, timeout=60).status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    err = err_path.read_text()
    assert len(re.findall(r"POST /v1/completions", err)) == 1, err  # kiln's line only, not uvicorn's too
    assert re.search(r"kiln serve: POST /v1/completions model=char 200 tokens=2\+3 \d+ ms", err), err
    assert re.search(r"kiln serve: loaded model char: [\d,]+ parameters on cpu", err), err
    assert "Traceback" not in err


# ------------------------------------------------------------------------- kiln generate == the server


@pytest.mark.parametrize("model", ["bpe-chat", "char"])
def test_generate_without_a_prompt_starts_where_the_server_starts(server, serve_models: Path, model: str, capsys):
    """No prompt: both start from the same document boundary (<|endoftext|> for BPE, a newline for char), so
    greedy decoding gives the same text from `kiln generate` as from /v1/completions."""
    body = {"model": model, "prompt": "", "max_tokens": 24, "temperature": 0}
    text = httpx.post(server.base_url + "/v1/completions", json=body, timeout=60).json()["choices"][0]["text"]
    argv = ["generate", "--checkpoint", str(serve_models / model), "--temperature", "0", "--max-new-tokens", "24"]
    assert main(argv) == 0
    assert capsys.readouterr().out == text + "\n"


def test_generate_stops_at_end_of_text_like_the_server(serve_models: Path, tmp_path: Path, capsys):
    """A model made to say <|endoftext|> within a few tokens: the server's completion stops there ("stop"), and
    `kiln generate` prints exactly the same text, not the special token nor what a model says after it."""
    from serve_support import run_server

    from kiln.model.checkpoint import load_checkpoint, save_checkpoint

    model, tok, meta = load_checkpoint(serve_models / "bpe-chat")
    eos, prompt = tok.special_tokens["<|endoftext|>"], tok.encode("ROMEO:")
    seen: list[torch.Tensor] = []
    hook = model.lm_head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0][0, -1].detach()))
    with torch.no_grad():
        ids = list(prompt)
        for _ in range(3):  # greedy, as the server decodes with temperature 0
            ids.append(int(model(torch.tensor([ids]))[0][0, -1].argmax()))
        hook.remove()
        h = seen[-1]  # the hidden state that picked the third token: make <|endoftext|> beat it there
        model.lm_head.weight[eos] = model.lm_head.weight[ids[-1]] + 8 * h / h.dot(h)
    meta = {k: v for k, v in meta.items() if k != "weights_sha256"}  # of the weights before the edit
    save_checkpoint(tmp_path / "models" / "eos", model, tok, meta)
    body = {"model": "eos", "prompt": "ROMEO:", "max_tokens": 20, "temperature": 0}
    with run_server(tmp_path / "models") as srv:
        choice = httpx.post(srv.base_url + "/v1/completions", json=body, timeout=60).json()["choices"][0]
    assert choice["finish_reason"] == "stop" and len(tok.encode(choice["text"])) < 20
    argv = ["generate", "--checkpoint", str(tmp_path / "models" / "eos"), "--prompt", "ROMEO:", "--temperature", "0"]
    assert main([*argv, "--max-new-tokens", "20"]) == 0
    out = capsys.readouterr().out
    assert out == "ROMEO:" + choice["text"] + "\n" and "<|endoftext|>" not in out


def test_completion_prompt_with_an_id_past_the_vocabulary_is_a_400_naming_it(server):
    vocab = httpx.get(server.base_url + "/v1/models/char").json()["vocab_size"]
    body = {"model": "char", "prompt": [1, 2, vocab + 5], "max_tokens": 2}
    r = httpx.post(server.base_url + "/v1/completions", json=body)
    err = r.json()["error"]  # OpenAI's shape: message, type, param, code
    assert r.status_code == 400 and (err["param"], err["code"], err["type"]) == (
        "prompt",
        "invalid_value",
        "invalid_request_error",
    )
    assert err["message"] == f"token id {vocab + 5} is not in this model's vocabulary of {vocab}"


def test_a_stderr_nobody_reads_does_not_freeze_the_server(serve_models: Path):
    """`kiln serve` with its stderr a pipe that is never drained: once the pipe is full, each access-log write
    would block; written on the event loop, one blocked write would stall every request."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "kiln", "serve", "--models", str(serve_models), "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # never read
    try:
        base = wait_healthy(port, proc)
        # ~120 bytes a line: 2,000 lines overfill the 64 KiB pipe several times over
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(2000):
                assert client.get("/health").status_code == 200
    finally:
        proc.kill()
        proc.wait(timeout=30)
