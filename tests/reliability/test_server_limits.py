"""The server's limits against abusive requests, hostile checkpoints and hosts, on a real `kiln serve` (uvicorn on
127.0.0.1 with the connection settings `kiln serve` uses): stop strings over the cap, /api/tokenize on megabytes,
a config.json asking for terabytes, error bodies that quoted files and paths, a host that only looks loopback,
and connections that send half a request."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from serve_support import run_server

from helpers import run_cli
from kiln.generate.stops import MAX_STOP_CHARS
from kiln.serve import ServeConfig
from kiln.serve.visualise import MAX_LISTED_TOKENS, MAX_TOKENIZE_CHARS


@pytest.fixture(scope="module")
def hostile_models(serve_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real models, plus copies made hostile: `huge` (config.json asks for block_size 10^12), `bad-tokenizer`
    (its ranks file starts with a secret line), `bad-weights` (its weights file is garbage)."""
    root = tmp_path_factory.mktemp("hostile") / "models"
    shutil.copytree(serve_models, root)
    char = next(p for p in (root / "char").rglob("config.json") if (p.parent / "model.safetensors").exists()).parent
    bpe = next(p for p in (root / "bpe-chat").rglob("config.json") if (p.parent / "model.safetensors").exists()).parent

    huge = root / "huge"
    shutil.copytree(char, huge)
    meta = json.loads((huge / "config.json").read_text())
    meta["model"]["block_size"] = 10**12
    (huge / "config.json").write_text(json.dumps(meta))

    bad = root / "bad-tokenizer"
    shutil.copytree(bpe, bad)
    ranks = next(p for p in (bad / "tokenizer").iterdir() if p.name != "kiln-tokenizer.json")
    ranks.write_text("SECRET-FIRST-LINE do-not-echo\n" + ranks.read_text())

    garbage = root / "bad-weights"
    shutil.copytree(char, garbage)
    (garbage / "model.safetensors").write_bytes(b"SECRET-FIRST-LINE\n" + bytes(range(256)) * 4)
    return root


@pytest.fixture(scope="module")
def server(hostile_models: Path):
    with run_server(hostile_models, max_memory_gb=1.0, read_timeout_s=1.0) as running:
        yield running


def health_latencies(base: str, stop: threading.Event) -> list[float]:
    """/health latencies, one request after another, until `stop` is set (run in its own thread)."""
    out: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            t = time.perf_counter()
            assert client.get("/health").status_code == 200
            out.append(time.perf_counter() - t)
            time.sleep(0.02)
    return out


# ------------------------------------------------------------------------------------------------ stop strings
def test_a_stop_string_over_the_cap_is_a_400_naming_stop(server) -> None:
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    for stop in ("x" * (MAX_STOP_CHARS + 1), ["ok", "y" * (MAX_STOP_CHARS + 1)]):
        with pytest.raises(openai.BadRequestError) as caught:
            client.completions.create(model="char", prompt="a", max_tokens=2, stop=stop)
        error = caught.value.body
        assert error["param"] == "stop" and error["type"] == "invalid_request_error", error
        assert str(MAX_STOP_CHARS) in error["message"]
    # at the cap itself it is served
    out = client.completions.create(model="char", prompt="a", max_tokens=2, stop="z" * MAX_STOP_CHARS)
    assert out.choices[0].finish_reason in ("length", "stop")


# ------------------------------------------------------------------------------------------------ /api/tokenize
@pytest.fixture(scope="module")
def busy_server(serve_models: Path):
    """The real models behind `kiln serve`'s default read deadline (10 s). The module's `server` has a 1 s deadline
    for the half-request tests; eight concurrent 1 MB uploads to a 2-core machine whose event loop is busy
    tokenizing megabytes can take longer than that to read (a run was reset mid-upload), which tests the deadline,
    not /api/tokenize (test_read_deadline.py has the deadline's part: server-side pauses do not count)."""
    with run_server(serve_models) as running:
        yield running


def test_eight_megabyte_tokenize_requests_leave_health_answering_and_responses_bounded(busy_server) -> None:
    server = busy_server
    text = ("To be, or not to be: that is the question. " * 25_000)[:1_000_000]
    names = ["char", "byte", "word", "model:char"] * 2
    stop = threading.Event()
    with ThreadPoolExecutor(9) as pool:
        watcher = pool.submit(health_latencies, server.base_url, stop)
        time.sleep(0.2)

        def big(name: str) -> httpx.Response:
            return httpx.post(server.base_url + "/api/tokenize", json={"text": text, "tokenizers": [name]}, timeout=300)

        try:
            responses = list(pool.map(big, names))
        finally:  # a request that fails must fail the test, not leave the watcher polling (and the pool waiting)
            stop.set()
        latencies = watcher.result()
    assert latencies and max(latencies) < 1.0, f"/health took up to {max(latencies):.2f} s"
    for name, r in zip(names, responses, strict=True):
        assert r.status_code == 200, r.text[:300]
        assert len(r.content) < 12 << 20, f"{name}: a {len(r.content) >> 20} MB response"
        (result,) = r.json()["results"]
        assert result["truncated"] and len(result["tokens"]) == MAX_LISTED_TOKENS
        assert result["count"] >= (len(text.encode()) if name == "byte" else 100_000)
        assert result["characters"] == len(text)


def test_tokenize_work_past_the_limit_is_a_400_naming_text(server) -> None:
    text = "a" * (MAX_TOKENIZE_CHARS // 4 + 1)
    r = httpx.post(server.base_url + "/api/tokenize", json={"text": text, "tokenizers": ["char"] * 4}, timeout=60)
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["param"] == "text" and f"{MAX_TOKENIZE_CHARS:,}" in r.json()["error"]["message"]
    # the listed tokens are shared by all tokenizers of a request
    r = httpx.post(server.base_url + "/api/tokenize", json={"text": "ab" * 60_000, "tokenizers": ["char", "byte"]})
    first, second = r.json()["results"]
    assert len(first["tokens"]) + len(second["tokens"]) == MAX_LISTED_TOKENS
    assert first["count"] == second["count"] == 120_000


# ------------------------------------------------------------------------------------------------ hostile checkpoints
def test_an_absurd_block_size_is_refused_against_max_memory_before_allocating(server) -> None:
    r = httpx.post(server.base_url + "/v1/completions", json={"model": "huge", "prompt": "a", "max_tokens": 1})
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "model_too_large" and error["param"] == "model"
    assert "block_size 1000000000000" in error["message"] and "--max-memory-gb 1" in error["message"]
    assert httpx.get(server.base_url + "/v1/models/huge").json()["loaded"] is False  # nothing was built
    r = httpx.post(server.base_url + "/v1/completions", json={"model": "char", "prompt": "a", "max_tokens": 1})
    assert r.status_code == 200  # a model within the budget still loads


@pytest.mark.parametrize("model", ["bad-tokenizer", "bad-weights"])
def test_error_bodies_hold_no_file_contents_and_no_absolute_paths(server, hostile_models: Path, model: str) -> None:
    for path, body in (
        ("/v1/completions", {"model": model, "prompt": "a", "max_tokens": 1}),
        ("/api/tokenize", {"text": "a", "tokenizers": [f"model:{model}"]}),
    ):
        r = httpx.post(server.base_url + path, json=body)
        assert r.status_code == 503, r.text
        assert f"'{model}'" in r.json()["error"]["message"]
        for secret in ("SECRET-FIRST-LINE", str(hostile_models), str(hostile_models.resolve()), "/tmp", "safetensors"):
            assert secret not in r.text, r.text


# ------------------------------------------------------------------------------------------------ hosts
def test_loopback_is_decided_by_resolved_address_not_by_name() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert ServeConfig(models=Path("."), host=host).is_loopback, host
    for host in ("127.example.com", "127.0.0.1.nip.io.invalid", "0.0.0.0", "::", "no-such-host.invalid"):
        assert not ServeConfig(models=Path("."), host=host).is_loopback, host


def test_a_hostname_starting_with_127_needs_the_api_key(serve_models: Path) -> None:
    rc, out, err = run_cli(["serve", "--models", str(serve_models), "--host", "127.example.com", "--port", "0"])
    assert rc == 2, (out, err)
    assert "--api-key" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ slow connections
def raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def closed_within(s: socket.socket, seconds: float) -> bool:
    """Whether the server closes `s` within `seconds` (anything it sends first, e.g. a 408, is read and ignored)."""
    s.settimeout(seconds)
    try:
        while s.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        s.close()


def test_slow_and_idle_connections_are_closed_and_the_server_stays_healthy(server) -> None:
    port = int(server.base_url.rsplit(":", 1)[1])
    silent = raw(port)  # connects, sends nothing
    partial = raw(port)  # slowloris: headers never finish
    partial.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    body = raw(port)  # a body that never arrives in full
    body.sendall(b"POST /api/tokenize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
    body.sendall(b'Content-Length: 1000\r\n\r\n{"text": "')
    dribble = raw(port)  # a byte at a time, forever
    dribble.sendall(b"GET /health HTTP/1.1\r\n")

    def keep_dribbling() -> None:
        for _ in range(20):
            try:
                dribble.sendall(b"X")
            except OSError:
                return
            time.sleep(0.25)

    threading.Thread(target=keep_dribbling, daemon=True).start()
    # read_timeout_s is 1 s here; allow scheduling slack on a busy machine
    for name, s in (("silent", silent), ("partial headers", partial), ("partial body", body)):
        assert closed_within(s, 8), f"a {name} connection was not closed"
    assert closed_within(dribble, 8), "a dribbling connection was not closed"
    # an idle keep-alive connection is closed too, after a complete request
    idle = raw(port)
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"200 OK" in idle.recv(4096)
    assert closed_within(idle, 8), "an idle keep-alive connection was not closed"
    assert httpx.get(server.base_url + "/health").status_code == 200


# ------------------------------------------------------------------------------------------------ metrics
def test_refused_requests_to_random_paths_add_no_metric_series(serve_models: Path) -> None:
    """With a key set, 401s for made-up paths were counted under the path itself: one Prometheus series per path,
    kept for the server's life (unbounded memory). They are counted under the protected prefix."""
    with run_server(serve_models, api_key="k") as running, httpx.Client(base_url=running.base_url) as client:
        for i in range(300):
            assert client.get(f"/v1/x{i}").status_code == 401
        text = client.get("/metrics", headers={"Authorization": "Bearer k"}).text
    assert "/v1/x1" not in text
    assert 'route="/v1",status="401"} 300.0' in text
