"""Many clients at once: continuous batching must not change anyone's tokens, a client that hangs up must
give its batch row back, and a full queue answers 429.

The tiny test models decode a whole context in a fraction of a second, far too fast to catch a request
mid-flight by timing. So the tests that need one in flight pause the model's worker thread between two
steps (`batcher.call`) and hold it just after a request's first token (by wrapping that request's event
callback); everything else — HTTP, asyncio, disconnect detection, cancellation — runs for real.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import openai
import pytest
from serve_support import run_server

CHAT = "bpe-chat"
T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def batcher_of(running, name: str = CHAT):
    r = httpx.post(running.base_url + "/v1/completions", json={"model": name, "prompt": "a", "max_tokens": 1})
    assert r.status_code == 200, r.text  # loads the model
    return running.app.state.registry.loaded[name].batcher


def metric(running, name: str) -> float:
    text = httpx.get(running.base_url + "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


@contextmanager
def paused(batcher) -> Iterator[None]:
    """The batcher's worker thread, blocked between two steps for the duration of the block."""
    started, release = threading.Event(), threading.Event()
    done = batcher.call(lambda _model: (started.set(), release.wait(30)))
    assert started.wait(10)
    try:
        yield
    finally:
        release.set()
        done.result(timeout=10)


def hold_after_first_token(batcher, start: Callable[[], T]) -> tuple[Any, threading.Event, T]:
    """Run `start()` (it sends one request), let the batcher admit that request and emit its first token,
    then keep the worker there: the request holds its batch row until the returned event is set."""
    held, release = threading.Event(), threading.Event()
    with paused(batcher):
        started = start()
        req = wait_for(lambda: batcher.waiting[-1] if batcher.waiting else None, what="the request to queue")
        forward = req.on_event

        def on_event(ev):
            forward(ev)
            held.set()
            release.wait(30)

        req.on_event = on_event
    assert held.wait(10), "the request never produced a token"
    return req, release, started


def raw_request(running, path: str, body: dict[str, Any]) -> socket.socket:
    """Send a request on a bare socket, so the test decides exactly when the connection closes."""
    host, port = running.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(data)}\r\n\r\n"
    sock.sendall(head.encode() + data)
    return sock


# ---------------------------------------------------------------------------------------------- batching
PROMPTS = [
    "ROMEO:",
    "The king",
    "What say you",
    "First Citizen:\nBefore we proceed",
    "O",
    "Is this a dagger",
    "My lord,",
    "Now is the winter of our discontent",
]


def request(i: int) -> tuple[str, dict[str, Any]]:
    """32 different requests: prompts of different lengths, lengths that end at different steps, greedy
    with and without a repetition penalty (the penalty makes greedy text varied), two endpoints."""
    common = {
        "model": CHAT,
        "temperature": 0,
        "seed": i,
        "max_tokens": 8 + (i * 7) % 50,
        "ignore_eos": True,
        "repetition_penalty": [1.0, 1.3, 2.0, 5.0][i % 4],
        "return_token_ids": True,
    }
    if i % 5 == 4:
        content = PROMPTS[i % len(PROMPTS)]
        return "/v1/chat/completions", {**common, "messages": [{"role": "user", "content": content}], "logprobs": True}
    return "/v1/completions", {**common, "prompt": PROMPTS[i % len(PROMPTS)] + " " * (i % 3), "logprobs": 1}


async def stream_one(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> tuple[str, list[int], list]:
    text, ids, logprobs = "", [], []
    async with client.stream("POST", path, json={**body, "stream": True}) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: ") :])
            assert "error" not in event, event
            for c in event["choices"]:
                if "delta" in c:
                    text += c["delta"].get("content") or ""
                    logprobs += [e["logprob"] for e in (c["logprobs"] or {"content": []})["content"]]
                else:
                    text += c["text"]
                    logprobs += (c["logprobs"] or {"token_logprobs": []})["token_logprobs"]
                ids += c.get("token_ids", [])
    return text, ids, logprobs


def test_32_concurrent_streams_match_their_requests_alone(server):
    batcher = batcher_of(server)
    requests = [request(i) for i in range(32)]

    async def main() -> tuple[list, list, int]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            alone = [await stream_one(client, p, b) for p, b in requests]
            widest = 0
            running = True

            async def watch() -> None:
                nonlocal widest
                while running:
                    widest = max(widest, len(batcher.active))
                    await asyncio.sleep(0.001)

            watcher = asyncio.create_task(watch())
            together = await asyncio.gather(*(stream_one(client, p, b) for p, b in requests))
            running = False
            await watcher
            return alone, together, widest

    alone, together, widest = asyncio.run(main())
    assert widest > 1, "the requests never shared a batch"
    for i, ((text_a, ids_a, lp_a), (text_b, ids_b, lp_b)) in enumerate(zip(alone, together, strict=True)):
        assert ids_b == ids_a, f"request {i}: batching changed its tokens"
        assert text_b == text_a and text_a
        assert len(ids_a) == requests[i][1]["max_tokens"]
        assert lp_b == pytest.approx(lp_a, abs=1e-4)
    assert len({t for t, _, _ in alone}) > 8  # the requests really differ


# ---------------------------------------------------------------------------------------------- disconnects
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
def test_client_that_disconnects_frees_its_row(server, stream):
    batcher = batcher_of(server)
    body = {"model": CHAT, "prompt": "ROMEO:", "max_tokens": 100, "ignore_eos": True, "stream": stream}
    req, release, sock = hold_after_first_token(batcher, lambda: raw_request(server, "/v1/completions", body))
    try:
        assert len(batcher.active) == 1 and metric(server, "kiln_running_sequences") == 1
        if stream:  # the first token is on the wire: this client leaves mid-stream
            seen = b""
            while b"data: " not in seen:
                seen += sock.recv(65536)
            assert b"200 OK" in seen
        sock.close()
        wait_for(lambda: req.cancelled, 10, "the server to notice the disconnect")
    finally:
        release.set()
    wait_for(lambda: not batcher.active, 10, "the row to be freed")
    wait_for(lambda: metric(server, "kiln_running_sequences") == 0, 10, "kiln_running_sequences == 0")
    assert len(req.tokens) < 5  # cancelled, not decoded to its 100 tokens
    # and the model serves the next request as usual
    r = httpx.post(server.base_url + "/v1/completions", json={**body, "stream": False, "max_tokens": 3})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3


# ---------------------------------------------------------------------------------------------- 429
@pytest.fixture(scope="module")
def tiny_queue(serve_models):
    with run_server(serve_models, max_batch=1, max_queue=1) as running:
        yield running


def test_full_queue_is_429(tiny_queue):
    url = tiny_queue.base_url
    batcher = batcher_of(tiny_queue)
    body = {"model": CHAT, "prompt": "ROMEO:", "max_tokens": 50, "ignore_eos": True}
    client = httpx.Client(base_url=url, timeout=60)
    results: dict[str, httpx.Response] = {}
    first = client.stream("POST", "/v1/completions", json={**body, "stream": True})
    _, release, response = hold_after_first_token(batcher, first.__enter__)

    def second() -> None:
        results["queued"] = httpx.post(url + "/v1/completions", json=body, timeout=60)

    queued = threading.Thread(target=second)
    try:
        assert response.status_code == 200 and len(batcher.active) == 1  # the only row is taken
        queued.start()
        wait_for(lambda: metric(tiny_queue, "kiln_queue_depth") == 1, 10, "the second request to queue")
        r = httpx.post(url + "/v1/completions", json=body)
        assert r.status_code == 429, r.text
        assert r.json()["error"]["type"] == "rate_limit_error" and r.json()["error"]["code"] == "queue_full"
        chat = {"model": CHAT, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
        assert httpx.post(url + "/v1/chat/completions", json=chat).status_code == 429
        oa = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            oa.completions.create(model=CHAT, prompt="x", max_tokens=2)
        assert metric(tiny_queue, "kiln_queue_depth") == 1  # the refused requests left nothing behind
    finally:
        release.set()
    events = [line for line in response.iter_lines() if line.startswith("data: ")]
    first.__exit__(None, None, None)
    assert events[-1] == "data: [DONE]"
    queued.join(30)
    assert results["queued"].status_code == 200
    assert results["queued"].json()["usage"]["completion_tokens"] == 50
    # once the queue drains, requests are accepted again
    assert httpx.post(url + "/v1/completions", json={**body, "max_tokens": 2}).status_code == 200
    client.close()
