"""A bounded soak of a real `kiln serve` process: ~200 concurrent clients for ~60 s mixing streamed chats, clients
that hang up mid-stream, oversize bodies, malformed JSON, the longest stop lists allowed, stop strings over the cap,
plain completions and tokenizer requests. No request may get a 5xx or go unanswered, /health must keep answering
(p99 under 1 s, measured throughout from a process of its own), and the server's memory must come back within 20%
of its post-warm-up baseline once the load stops.

The figures (requests by outcome, /health p50/p99/max, RSS) are printed for docs/benchmarks.md, and written to the
file KILN_SOAK_REPORT names, if set. KILN_SOAK_SECONDS and KILN_SOAK_CLIENTS change the load (defaults 60 s and 200
clients, after a 15 s warm-up at the same load: the test takes about 100 s on 2 cores, the two tiny models'
training included).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from kiln.generate.stops import MAX_STOP_CHARS
from kiln.serve.protocol import MAX_STOPS

SECONDS = float(os.environ.get("KILN_SOAK_SECONDS", "60"))
CLIENTS = int(os.environ.get("KILN_SOAK_CLIENTS", "200"))
WARMUP_SECONDS = 15.0
MAX_BODY = 256 << 10
CHAT, BASE = "bpe-chat", "char"
LONG_STOPS = [f"{i:02d}" + "~" * (MAX_STOP_CHARS - 2) for i in range(MAX_STOPS)]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one_request(client: httpx.AsyncClient, kind: str, trace: Trace) -> str:
    """Send one request of `kind`; return its outcome ('200', '400', '413', 'hung-up', ...). `trace` sees httpcore's
    events (a new connection's 'connection.connect_tcp.started' among them)."""
    post, ext = client.post, {"trace": trace}
    if kind == "stream_chat":
        body = {"model": CHAT, "messages": [{"role": "user", "content": "Speak."}], "max_tokens": 8, "stream": True}
        async with client.stream("POST", "/v1/chat/completions", json=body, extensions=ext) as r:
            lines = [line async for line in r.aiter_lines() if line]
            if r.status_code == 200:
                assert lines[-1] == "data: [DONE]" and not any('"error"' in x for x in lines), lines[-3:]
            return str(r.status_code)
    if kind == "disconnect":
        body = {"model": BASE, "prompt": "ROMEO:", "max_tokens": 64, "stream": True}
        async with client.stream("POST", "/v1/completions", json=body, extensions=ext) as r:
            async for _ in r.aiter_lines():
                break  # hang up after the first line: the server must cancel the rows
            return "hung-up" if r.status_code == 200 else str(r.status_code)
    if kind == "oversize":
        try:
            r = await post("/v1/completions", content=b"{" + b" " * MAX_BODY + b"}", extensions=ext)
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            return "refused-mid-upload"  # the 413 went out and the connection closed before the body was sent
        return str(r.status_code)
    if kind == "malformed":
        r = await post("/v1/completions", content=b'{"model": "char", "prompt": ', headers=JSON, extensions=ext)
        return str(r.status_code)
    if kind == "long_stops":
        body = {"model": BASE, "prompt": "KING:", "max_tokens": 6, "stop": LONG_STOPS}
        return str((await post("/v1/completions", json=body, extensions=ext)).status_code)
    if kind == "stop_over_cap":
        body = {"model": BASE, "prompt": "KING:", "max_tokens": 6, "stop": ["x" * (MAX_STOP_CHARS + 1)]}
        return str((await post("/v1/completions", json=body, extensions=ext)).status_code)
    if kind == "completion":
        body = {"model": CHAT, "prompt": "To be", "max_tokens": 8, "n": 2}
        return str((await post("/v1/completions", json=body, extensions=ext)).status_code)
    if kind == "tokenize":
        body = {"text": "Now is the winter of our discontent. " * 200, "tokenizers": ["char", "word", f"model:{CHAT}"]}
        return str((await post("/api/tokenize", json=body, extensions=ext)).status_code)
    raise AssertionError(kind)


JSON = {"content-type": "application/json"}
KINDS = ["stream_chat"] * 5 + ["disconnect"] * 3 + ["completion"] * 3 + ["oversize"] * 2 + ["malformed"] * 2
KINDS += ["long_stops"] * 2 + ["stop_over_cap", "tokenize"]


Trace = Callable[[str, dict], Awaitable[None]]
NEW_CONNECTION = "connection.connect_tcp.started"
# What a client sees when the server closes an idle kept-alive connection just as the client reuses it. HTTP allows
# the close at any moment (RFC 9112, 9.3.1.1) and clients retry such a request on a new connection (openai's does,
# twice): the request never reached the server's handler, so it is retried once, counted, and not unanswered.
KEEPALIVE_RACE = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


async def attempt(client: httpx.AsyncClient, kind: str) -> tuple[str, bool]:
    """('KIND OUTCOME', whether it failed on a reused connection as the keep-alive race does) of one `kind` request."""
    events: set[str] = set()

    async def trace(name: str, info: dict) -> None:
        events.add(name)

    try:
        return f"{kind} {await one_request(client, kind, trace)}", False
    except httpx.TimeoutException:
        return f"{kind} TIMEOUT", False
    except httpx.TransportError as e:
        return f"{kind} TRANSPORT {type(e).__name__}", isinstance(e, KEEPALIVE_RACE) and NEW_CONNECTION not in events


async def drive(base: str, clients: int, seconds: float, outcomes: Counter[str], retried: Counter[str]) -> None:
    """`clients` concurrent clients, each sending one request after another (a random kind) until `seconds` pass.
    A request lost to the keep-alive race is counted in `retried` and sent once more."""
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(i: int, client: httpx.AsyncClient) -> None:
        rng = random.Random(i)
        await asyncio.sleep(rng.random())  # spread the start
        while time.monotonic() < deadline:
            kind = rng.choice(KINDS)
            outcome, race = await attempt(client, kind)
            if race:
                retried[outcome] += 1
                outcome, _ = await attempt(client, kind)
            outcomes[outcome] += 1

    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        await asyncio.gather(*(client_loop(i, client) for i in range(clients)))


def poll_health(base: str, stop: threading.Event, latencies: list[float], failures: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                r = client.get("/health")
                if r.status_code != 200:
                    failures.append(str(r.status_code))
            except httpx.HTTPError as e:
                failures.append(type(e).__name__)
            latencies.append(time.perf_counter() - t)
            stop.wait(0.1)


def health_process(base: str, stop, conn) -> None:
    """`poll_health` in a process of its own: the 200 clients' event loop in this one must not delay its polls."""
    latencies: list[float] = []
    failures: list[str] = []
    poll_health(base, stop, latencies, failures)
    conn.send((latencies, failures))
    conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.slow
def test_soak_two_hundred_clients_no_5xx_health_answers_memory_returns(serve_models: Path, capsys) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # glibc gives each thread that allocates (anyio's pool, the batchers, the tokenize workers) an arena of its own,
    # up to 8 per core, and an arena keeps pages once touched: with the default the RSS creeps up for minutes (10-18%
    # over this soak, decelerating) though nothing leaks. Two arenas make it plateau after the warm-up, so the check
    # below measures leaks, not how many arenas the scheduler happened to touch.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILN_API_KEY": "", "MALLOC_ARENA_MAX": "2"}
    argv = [sys.executable, "-m", "kiln", "serve", "--models", str(serve_models), "--port", str(port)]
    argv += ["--max-body-bytes", str(MAX_BODY)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "kiln serve did not start"
            time.sleep(0.2)

        warm: Counter[str] = Counter()
        # load both models, fill the allocator's arenas
        asyncio.run(drive(base, CLIENTS, WARMUP_SECONDS, warm, Counter()))
        time.sleep(2)
        baseline = rss_bytes(proc.pid)

        outcomes: Counter[str] = Counter()
        retried: Counter[str] = Counter()
        ctx = multiprocessing.get_context("fork")  # before any thread of this test starts
        stop_polling, (results, sender) = ctx.Event(), ctx.Pipe(duplex=False)
        poller = ctx.Process(target=health_process, args=(base, stop_polling, sender), daemon=True)
        stop = threading.Event()
        peak = [baseline]

        def watch_memory() -> None:
            while not stop.wait(0.5):
                peak[0] = max(peak[0], rss_bytes(proc.pid))

        watcher = threading.Thread(target=watch_memory, daemon=True)
        poller.start()
        watcher.start()
        started = time.monotonic()
        asyncio.run(drive(base, CLIENTS, SECONDS, outcomes, retried))
        elapsed = time.monotonic() - started
        stop.set()
        stop_polling.set()
        assert results.poll(30), "the /health poller did not report"
        latencies, health_failures = results.recv()
        poller.join(timeout=15)
        watcher.join(timeout=5)
        time.sleep(3)  # let the last cancelled rows be freed
        after = rss_bytes(proc.pid)
        assert proc.poll() is None, "the server died"
        metrics = httpx.get(base + "/health", timeout=5).json()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    total = sum(outcomes.values())
    server_errors = {k: v for k, v in outcomes.items() if k.split()[1].startswith("5")}
    unanswered = {k: v for k, v in outcomes.items() if "TIMEOUT" in k or "TRANSPORT" in k}
    figures = {
        "clients": CLIENTS,
        "seconds": round(elapsed, 1),
        "requests": total,
        "requests_per_second": round(total / elapsed, 1),
        "outcomes": dict(sorted(outcomes.items())),
        "server_errors_5xx": sum(server_errors.values()),
        "unanswered": sum(unanswered.values()),
        "retried_after_keepalive_race": dict(retried),
        "health_polls": len(latencies),
        "health_p50_ms": round(1000 * percentile(latencies, 0.50), 1),
        "health_p99_ms": round(1000 * percentile(latencies, 0.99), 1),
        "health_max_ms": round(1000 * max(latencies), 1),
        "rss_baseline_mb": round(baseline / 2**20, 1),
        "rss_peak_mb": round(peak[0] / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "rss_after_vs_baseline": round(after / baseline, 3),
        "models_loaded": metrics["models_loaded"],
    }
    with capsys.disabled():
        print("\nkiln serve soak:", json.dumps(figures, indent=1))
    if os.environ.get("KILN_SOAK_REPORT"):  # a file for docs/benchmarks.md
        Path(os.environ["KILN_SOAK_REPORT"]).write_text(json.dumps(figures, indent=1) + "\n")
    assert not server_errors, server_errors
    assert not unanswered, unanswered
    assert sum(retried.values()) <= max(2, total // 1000), retried  # a rare race, not a server that drops requests
    assert not health_failures, Counter(health_failures)
    assert percentile(latencies, 0.99) < 1.0, figures
    assert after <= 1.2 * baseline, figures
    # every kind of request was exercised, and the refusals were the right ones
    for kind in set(KINDS):
        assert any(k.startswith(kind + " ") for k in outcomes), kind
    assert all(k.split()[1] in ("400", "413", "refused-mid-upload") for k in outcomes if k.startswith("oversize"))
    assert all(k.split()[1] == "400" for k in outcomes if k.startswith(("malformed", "stop_over_cap")))
