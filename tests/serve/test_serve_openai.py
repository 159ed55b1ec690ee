"""`kiln serve` through the real `openai` client (and httpx where kiln's extras are easier to read raw):
completions and chat, streamed and not, logprobs, stop strings, seeds, n, usage, max_tokens and kiln's
sampling extras. Everything runs against the session's live server (tests/serve_support.py)."""

from __future__ import annotations

import codecs
import itertools
import json
from typing import Any

import httpx
import openai
import pytest

CHAT = "bpe-chat"
MESSAGES = [{"role": "user", "content": "Speak, good king."}]


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=60)


def post(server, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(server.base_url + path, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def sse(server, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every `data:` event of a streamed response, parsed; checks the stream ends with [DONE]."""
    with httpx.stream("POST", server.base_url + path, json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data: ") :] for line in r.iter_lines() if line.startswith("data: ")]
    assert data and data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def generate(client: openai.OpenAI, endpoint: str, stream: bool, **kw: Any) -> tuple[list[str], list[str], Any]:
    """(texts by choice index, finish reasons, usage) of one request through the openai client."""
    n = kw.get("n", 1)
    texts, reasons, usage = [""] * n, [""] * n, None
    if endpoint == "completions":
        kw.setdefault("prompt", "The king")
        create = client.completions.create
    else:
        kw.setdefault("messages", MESSAGES)
        create = client.chat.completions.create
    if not stream:
        r = create(model=CHAT, **kw)
        for c in r.choices:
            texts[c.index] = c.text if endpoint == "completions" else c.message.content
            reasons[c.index] = c.finish_reason
        return texts, reasons, r.usage
    for chunk in create(model=CHAT, stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
        for c in chunk.choices:
            texts[c.index] += (c.text if endpoint == "completions" else c.delta.content) or ""
            if c.finish_reason:
                assert not reasons[c.index], "a choice finished twice"
                reasons[c.index] = c.finish_reason
    return texts, reasons, usage


# ---------------------------------------------------------------------------------------------- models
def test_models_list_and_retrieve(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {"bpe-chat", "char"}
    assert all(m.object == "model" and m.owned_by == "kiln" for m in models.values())
    assert models["bpe-chat"].model_extra["context_length"] == 128
    assert models["char"].model_extra["context_length"] == 64
    assert models["bpe-chat"].model_extra["chat"] is True and models["char"].model_extra["chat"] is False
    assert client.models.retrieve("char").id == "char"


# ---------------------------------------------------------------------------------------------- basics
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_and_usage(client, endpoint, stream):
    texts, reasons, usage = generate(
        client, endpoint, stream, max_tokens=7, temperature=1.0, seed=3, extra_body={"ignore_eos": True}
    )
    assert reasons == ["length"]
    assert usage.completion_tokens == 7
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert texts[0]


def test_usage_counts_tokens_and_prompt(server, client):
    body = {
        "model": CHAT,
        "prompt": "ROMEO:",
        "max_tokens": 9,
        "logprobs": 0,
        "return_token_ids": True,
        "temperature": 0.7,
        "seed": 11,
    }
    r = post(server, "/v1/completions", body)
    choice, usage = r["choices"][0], r["usage"]
    assert usage["completion_tokens"] == len(choice["logprobs"]["token_logprobs"]) == len(choice["token_ids"])
    tokenized = post(server, "/api/tokenize", {"text": "ROMEO:", "tokenizers": [f"model:{CHAT}"]})
    ids = [t["id"] for t in tokenized["results"][0]["tokens"]]
    assert choice["prompt_token_ids"] == ids and usage["prompt_tokens"] == len(ids)


def test_finish_reason_stop_on_a_stop_string(client):
    (text,), _, _ = generate(client, "completions", False, max_tokens=30, temperature=1.0, seed=5)
    stop = text[4:6]
    (cut,), (reason,), usage = generate(
        client, "completions", False, max_tokens=30, temperature=1.0, seed=5, stop=[stop, "never-seen-zzz"]
    )
    assert reason == "stop"
    assert cut == text[: text.find(stop)] and stop not in cut
    assert usage.completion_tokens < 30


# ---------------------------------------------------------------------------------------------- logprobs
def test_completion_logprobs(server):
    body = {
        "model": CHAT,
        "prompt": "The king",
        "max_tokens": 12,
        "logprobs": 5,
        "temperature": 0.3,
        "seed": 2,
        "return_token_ids": True,
    }
    r = post(server, "/v1/completions", body)
    choice = r["choices"][0]
    lp = choice["logprobs"]
    n = r["usage"]["completion_tokens"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == n
    assert "".join(lp["tokens"]) == choice["text"]
    assert lp["text_offset"] == [0, *itertools.accumulate(len(t) for t in lp["tokens"][:-1])]
    seen_in_top = 0
    for tok_id, chosen, top, top_dict in zip(
        choice["token_ids"], lp["token_logprobs"], lp["top_tokens"], lp["top_logprobs"], strict=True
    ):
        assert chosen <= 0
        values = [t["logprob"] for t in top]
        assert len(top) == 5 and values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        assert all(v <= 0 for v in top_dict.values())
        for t in top:
            if t["id"] == tok_id:
                seen_in_top += 1
                assert t["logprob"] == pytest.approx(chosen, abs=1e-6)
        if tok_id not in [t["id"] for t in top]:
            assert chosen <= values[-1] + 1e-6  # a token outside the top 5 is no likelier than the 5th
    assert seen_in_top > 0


def test_completion_logprobs_stream_match(client):
    kw = dict(prompt="ROMEO:", max_tokens=10, logprobs=3, temperature=1.0, seed=9)
    whole = client.completions.create(model=CHAT, **kw).choices[0].logprobs
    tokens, logprobs = [], []
    for chunk in client.completions.create(model=CHAT, stream=True, **kw):
        for c in chunk.choices:
            tokens += c.logprobs.tokens
            logprobs += c.logprobs.token_logprobs
    assert tokens == whole.tokens
    assert logprobs == pytest.approx(whole.token_logprobs, abs=1e-5)


def test_chat_logprobs(client):
    r = client.chat.completions.create(
        model=CHAT, messages=MESSAGES, max_tokens=10, logprobs=True, top_logprobs=4, temperature=0.3, seed=4
    )
    choice = r.choices[0]
    content = choice.logprobs.content
    assert len(content) == r.usage.completion_tokens
    raw = b"".join(bytes(e.bytes) for e in content)
    if choice.finish_reason == "length":
        assert raw.decode("utf-8", errors="replace") == choice.message.content
    seen = 0
    for e in content:
        assert e.logprob <= 0
        values = [t.logprob for t in e.top_logprobs]
        assert len(values) == 4 and values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        for t in e.top_logprobs:
            if t.bytes == e.bytes:
                seen += 1
                assert t.logprob == pytest.approx(e.logprob, abs=1e-6)
        if e.bytes not in [t.bytes for t in e.top_logprobs]:
            assert e.logprob <= values[-1] + 1e-6
    assert seen > 0
    plain = client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=3, logprobs=True, seed=4)
    assert all(e.top_logprobs == [] for e in plain.choices[0].logprobs.content)
    assert client.chat.completions.create(model=CHAT, messages=MESSAGES, max_tokens=3).choices[0].logprobs is None


# ---------------------------------------------------------------------------------------------- stop strings
def split_stop(text: str, pieces: list[str]) -> tuple[str, int]:
    """A 2-3 character string whose first occurrence in `text` (made of `pieces`, the token texts) spans a
    boundary between two tokens, and where it starts (>= 1, so the expected output is not empty)."""
    assert "".join(pieces) == text
    for boundary in itertools.accumulate(len(p) for p in pieces[:-1]):
        for length in (2, 3):
            for start in range(max(1, boundary - length + 1), boundary):
                s = text[start : start + length]
                if len(s) == length and text.find(s) == start and s.strip() == s and "\ufffd" not in s:
                    return s, start
    raise AssertionError(f"no stop string spans a token boundary in {pieces}")


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_stop_string_split_across_tokens_is_never_echoed(client, endpoint):
    kw: dict[str, Any] = dict(max_tokens=40, temperature=0.9, seed=7, extra_body={"ignore_eos": True})
    if endpoint == "completions":
        r = client.completions.create(model=CHAT, prompt="The king", logprobs=0, **kw)
        text, pieces = r.choices[0].text, r.choices[0].logprobs.tokens
    else:
        r = client.chat.completions.create(model=CHAT, messages=MESSAGES, logprobs=True, **kw)
        text = r.choices[0].message.content
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")  # a character split over 2 tokens goes with the 2nd
        pieces = [utf8.decode(bytes(e.bytes)) for e in r.choices[0].logprobs.content]
        if r.choices[0].finish_reason == "stop":
            pieces = pieces[:-1]  # <|im_end|>: a token, but no text
    stop, at = split_stop(text, pieces)
    for stream in (False, True):
        (out,), (reason,), usage = generate(client, endpoint, stream, stop=stop, **kw)
        assert out == text[:at], (stop, stream)
        assert stop not in out and reason == "stop"
        assert usage.completion_tokens < 40


# ---------------------------------------------------------------------------------------------- seeds, n
@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_seed_is_deterministic_streamed_or_not(client, endpoint):
    kw = dict(max_tokens=30, temperature=1.0, extra_body={"ignore_eos": True})
    first = generate(client, endpoint, False, seed=1234, **kw)
    assert generate(client, endpoint, False, seed=1234, **kw)[0] == first[0]
    assert generate(client, endpoint, True, seed=1234, **kw)[0] == first[0]
    assert generate(client, endpoint, False, seed=4321, **kw)[0] != first[0]


@pytest.mark.parametrize("endpoint", ["completions", "chat"])
def test_n_choices(client, endpoint):
    kw = dict(max_tokens=20, temperature=1.0, seed=99, extra_body={"ignore_eos": True})
    texts, reasons, usage = generate(client, endpoint, False, n=3, **kw)
    assert len(set(texts)) == 3 and all(texts) and reasons == ["length"] * 3
    assert usage.completion_tokens == 60
    single = generate(client, endpoint, False, **kw)
    assert usage.prompt_tokens == single[2].prompt_tokens  # one prompt, counted once however many choices
    assert texts[0] == single[0][0]  # choice i draws from seed + i
    streamed = generate(client, endpoint, True, n=3, **kw)
    assert streamed[0] == texts and streamed[1] == reasons
    assert streamed[2].completion_tokens == 60 and streamed[2].prompt_tokens == usage.prompt_tokens


def test_stream_include_usage_only_when_asked(server):
    body = {"model": CHAT, "prompt": "ROMEO:", "max_tokens": 5, "ignore_eos": True}
    plain = sse(server, "/v1/completions", body)
    assert all(c["usage"] is None and len(c["choices"]) == 1 for c in plain)
    events = sse(server, "/v1/completions", {**body, "stream_options": {"include_usage": True}})
    assert all(c["usage"] is None for c in events[:-1])
    last = events[-1]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 5
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + 5
    chat = sse(
        server,
        "/v1/chat/completions",
        {"model": CHAT, "messages": MESSAGES, "max_tokens": 4, "stream_options": {"include_usage": True}},
    )
    assert chat[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chat[-1]["choices"] == [] and chat[-1]["usage"]["completion_tokens"] >= 1
    assert {c["object"] for c in chat} == {"chat.completion.chunk"}


# ---------------------------------------------------------------------------------------------- extras
def completion_ids(server, **kw: Any) -> list[int]:
    body = {"model": CHAT, "prompt": "ROMEO:", "max_tokens": 16, "return_token_ids": True, "ignore_eos": True, **kw}
    return post(server, "/v1/completions", body)["choices"][0]["token_ids"]


def test_top_k_1_and_min_p_1_equal_greedy(server, client):
    greedy = completion_ids(server, temperature=0)
    assert completion_ids(server, temperature=1.5, top_k=1, seed=1) == greedy
    assert completion_ids(server, temperature=1.5, min_p=1.0, seed=2) == greedy
    r = client.completions.create(
        model=CHAT,
        prompt="ROMEO:",
        max_tokens=16,
        temperature=1.5,
        seed=3,
        extra_body={"top_k": 1, "return_token_ids": True, "ignore_eos": True},
    )
    assert r.choices[0].model_extra["token_ids"] == greedy
    # and without the extra, a hot sample is not greedy
    assert completion_ids(server, temperature=1.5, seed=3) != greedy


def test_repetition_penalty(server):
    greedy = completion_ids(server, temperature=0)
    assert len(set(greedy)) < len(greedy)  # this tiny model repeats itself when greedy
    penalised = completion_ids(server, temperature=0, repetition_penalty=100.0)
    assert penalised != greedy
    assert len(set(penalised)) > len(set(greedy))


def test_prompt_as_token_ids_and_batches(server):
    text = post(
        server,
        "/v1/completions",
        {"model": CHAT, "prompt": "ROMEO:", "max_tokens": 8, "temperature": 0, "return_token_ids": True},
    )
    ids = text["choices"][0]["prompt_token_ids"]
    by_ids = post(server, "/v1/completions", {"model": CHAT, "prompt": ids, "max_tokens": 8, "temperature": 0})
    assert by_ids["choices"][0]["text"] == text["choices"][0]["text"]
    assert by_ids["usage"]["prompt_tokens"] == len(ids)
    other = [ids[0]]
    batch = post(
        server, "/v1/completions", {"model": CHAT, "prompt": [ids, other], "max_tokens": 8, "temperature": 0, "n": 2}
    )
    assert [c["index"] for c in batch["choices"]] == [0, 1, 2, 3]
    assert batch["choices"][0]["text"] == batch["choices"][1]["text"] == text["choices"][0]["text"]
    assert batch["usage"]["prompt_tokens"] == len(ids) + 1
    strings = post(
        server, "/v1/completions", {"model": CHAT, "prompt": ["ROMEO:", "The"], "max_tokens": 8, "temperature": 0}
    )
    assert strings["choices"][0]["text"] == text["choices"][0]["text"]


@pytest.mark.parametrize("stream", [False, True])
def test_echo(client, stream):
    kw = dict(prompt="ROMEO:", max_tokens=6, temperature=0, echo=True)
    plain = client.completions.create(model=CHAT, prompt="ROMEO:", max_tokens=6, temperature=0).choices[0].text
    if stream:
        text = "".join(c.choices[0].text for c in client.completions.create(model=CHAT, stream=True, **kw))
    else:
        text = client.completions.create(model=CHAT, **kw).choices[0].text
    assert text == "ROMEO:" + plain


def test_extreme_sampling_values_do_not_break_the_model(server):
    """A temperature just above 0 is greedy (as in vLLM): logits / 1e-40 overflow to inf and the sampler
    would raise on the batcher's worker thread, taking the model down for every client. A repetition
    penalty near 0 would do the same, so it is refused below 0.01."""
    greedy = completion_ids(server, temperature=0)
    for t in (1e-300, 1e-40, 1e-7):
        assert completion_ids(server, temperature=t, seed=1) == greedy
    assert len(completion_ids(server, temperature=1e-5, repetition_penalty=0.01, seed=1)) == 16
    assert len(completion_ids(server, temperature=100.0, repetition_penalty=100.0, seed=1)) == 16
    r = httpx.post(
        server.base_url + "/v1/completions",
        json={"model": CHAT, "prompt": "hi hi", "repetition_penalty": 1e-300},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "repetition_penalty"
    assert completion_ids(server, temperature=1.0, seed=1) != greedy  # the model still samples
