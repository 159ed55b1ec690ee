"""Errors of `kiln serve` in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, with OpenAI's
status codes: 400 naming the bad parameter, 401, 404, 413; the openai client raises its own exception
types for them. (429, the full queue, is in test_serve_concurrency.py.)"""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from serve_support import run_server

CHAT = "bpe-chat"
COMPLETION = {"model": CHAT, "prompt": "ROMEO:", "max_tokens": 2}
CHAT_BODY = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def assert_error(r: httpx.Response, status: int, *, param: Any = ..., code: Any = ..., kind: str | None = None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == (
        kind
        or {
            400: "invalid_request_error",
            401: "authentication_error",
            404: "not_found_error",
            413: "invalid_request_error",
        }[status]
    )
    if param is not ...:
        assert err["param"] == param, err
    if code is not ...:
        assert err["code"] == code, err
    return err


# ---------------------------------------------------------------------------------------------- 400: parameters
COMPLETION_CASES = [
    ("temperature", -1),
    ("temperature", 101),
    ("temperature", "hot"),
    ("top_p", 0),
    ("top_p", 1.5),
    ("n", 0),
    ("n", 17),
    ("n", 1.5),
    ("n", "2"),
    ("max_tokens", 0),
    ("max_tokens", -3),
    ("max_tokens", "5"),
    ("max_tokens", 2.5),
    ("logprobs", 50),
    ("logprobs", -1),
    ("logprobs", True),
    ("top_k", -5),
    ("top_k", 1.5),
    ("min_p", 1.5),
    ("repetition_penalty", 0),
    ("repetition_penalty", -1.0),
    ("repetition_penalty", 1e-300),
    ("seed", "x"),
    ("seed", 2**64),
    ("stream", "yes"),
    ("echo", 1),
    ("stop", 5),
    ("stop", ""),
    ("stop", [""]),
    ("stop", ["a"] * 17),
    ("model", ""),
    ("model", 5),
    ("prompt", 5),
    ("prompt", []),
    ("prompt", [[]]),
    ("prompt", [1, "a"]),
    ("prompt", [-1]),
    ("prompt", [400]),  # bpe-chat's vocabulary is 400 ids
    ("prompt", None),
    ("presence_penalty", 0.5),
    ("frequency_penalty", 3),
    ("suffix", "tail"),
    ("stream_options", {"include_usage": "yes"}),
    ("ignore_eos", "no"),
]


@pytest.mark.parametrize(("param", "value"), COMPLETION_CASES, ids=[f"{p}={v!r}"[:40] for p, v in COMPLETION_CASES])
def test_completions_invalid_parameter_is_400_naming_it(server, param, value):
    r = httpx.post(server.base_url + "/v1/completions", json={**COMPLETION, param: value})
    assert_error(r, 400, param="stream_options.include_usage" if param == "stream_options" else param)


CHAT_CASES = [
    ("temperature", -1),
    ("top_p", 0),
    ("n", 0),
    ("max_tokens", 0),
    ("max_completion_tokens", 0),
    ("logprobs", 1),
    ("top_logprobs", 50),
    ("top_logprobs", 3),  # without logprobs: true
    ("top_k", -5),
    ("messages", []),
    ("messages", "hi"),
    ("messages", [{"role": "robot", "content": "x"}]),
    ("messages", [{"content": "x"}]),
    ("messages", [{"role": "user", "content": 5}]),
    ("messages", [{"role": "user", "content": [{"type": "image_url", "text": "x"}]}]),
]


@pytest.mark.parametrize(("param", "value"), CHAT_CASES, ids=[f"{p}={v!r}"[:40] for p, v in CHAT_CASES])
def test_chat_invalid_parameter_is_400_naming_it(server, param, value):
    r = httpx.post(server.base_url + "/v1/chat/completions", json={**CHAT_BODY, param: value})
    err = assert_error(r, 400)
    assert err["param"] == param or (param == "messages" and err["param"].startswith("messages.0.")), err


def test_param_names_the_path_into_nested_fields(server):
    r = httpx.post(
        server.base_url + "/v1/chat/completions",
        json={**CHAT_BODY, "messages": [{"role": "user", "content": "a"}, {"role": "bot"}]},
    )
    assert_error(r, 400, param="messages.1.role", code="invalid_value")
    r = httpx.post(server.base_url + "/v1/completions", json={**COMPLETION, "prompt": [1, 2, -7]})
    assert_error(r, 400, code="invalid_value")["param"].startswith("prompt")


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        ("/v1/completions", "model"),
        ("/v1/completions", "prompt"),
        ("/v1/chat/completions", "model"),
        ("/v1/chat/completions", "messages"),
    ],
)
def test_missing_required_field(server, path, missing):
    body = dict(COMPLETION if path == "/v1/completions" else CHAT_BODY)
    del body[missing]
    assert_error(httpx.post(server.base_url + path, json=body), 400, param=missing)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"a string"', b"null", b'{"model": "bpe-chat",'])
def test_bad_json_body(server, raw):
    r = httpx.post(server.base_url + "/v1/completions", content=raw, headers={"content-type": "application/json"})
    assert_error(r, 400, param="body")


def test_conflicting_or_too_many_choices(server):
    url = server.base_url + "/v1/completions"
    assert_error(httpx.post(url, json={**COMPLETION, "echo": True, "logprobs": 2}), 400, param="echo")
    assert_error(httpx.post(url, json={**COMPLETION, "prompt": ["a"] * 8, "n": 16}), 400, param="n")


def test_openai_client_raises_bad_request_with_param(server):
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=CHAT, prompt="x", temperature=-1)
    assert e.value.status_code == 400 and e.value.param == "temperature" and e.value.code == "invalid_value"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "x"}], top_p=1.5)
    assert e.value.param == "top_p"


# ---------------------------------------------------------------------------------------------- context, chat
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {**COMPLETION, "prompt": "ROMEO: " * 200}),
        ("/v1/completions", {**COMPLETION, "prompt": [5] * 128}),
        ("/v1/completions", {**COMPLETION, "prompt": ["short", "ROMEO: " * 200]}),
        ("/v1/completions", {**COMPLETION, "model": "char", "prompt": "a" * 64}),
        ("/v1/chat/completions", {**CHAT_BODY, "messages": [{"role": "user", "content": "words " * 200}]}),
        ("/api/next_token", {"model": CHAT, "prompt": [5] * 128}),
    ],
    ids=["text", "ids", "batch", "char", "chat", "next_token"],
)
def test_prompt_longer_than_context(server, path, body):
    err = assert_error(httpx.post(server.base_url + path, json=body), 400, code="context_length_exceeded")
    assert err["param"] in ("prompt", "messages")
    assert "context length" in err["message"]


def test_longest_prompt_that_fits_still_generates(server):
    r = httpx.post(server.base_url + "/v1/completions", json={**COMPLETION, "prompt": [5] * 127, "max_tokens": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 1


def test_base_model_cannot_chat(server):
    r = httpx.post(server.base_url + "/v1/chat/completions", json={**CHAT_BODY, "model": "char"})
    assert_error(r, 400, param="model", code="no_chat_template")
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="char", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "no_chat_template"


# ---------------------------------------------------------------------------------------------- 404
def test_unknown_model_is_404(server):
    for path, body in [
        ("/v1/completions", COMPLETION),
        ("/v1/chat/completions", CHAT_BODY),
        ("/api/next_token", {"prompt": "x"}),
    ]:
        r = httpx.post(server.base_url + path, json={**body, "model": "no-such-model"})
        assert_error(r, 404, param="model", code="model_not_found")
    assert_error(httpx.get(server.base_url + "/v1/models/no-such-model"), 404, code="model_not_found")
    client = openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_unknown_route_and_method(server):
    assert_error(httpx.get(server.base_url + "/v1/nothing-here"), 404)
    assert_error(httpx.post(server.base_url + "/v2/completions", json=COMPLETION), 404)
    assert_error(httpx.get(server.base_url + "/v1/completions"), 405, kind="invalid_request_error")


def test_unknown_tokenizer(server):
    r = httpx.post(server.base_url + "/api/tokenize", json={"text": "x", "tokenizers": ["no-such-vocab"]})
    assert_error(r, 400, param="tokenizers")
    r = httpx.post(server.base_url + "/api/tokenize", json={"text": "x", "tokenizers": ["model:no-such-model"]})
    assert_error(r, 404, code="model_not_found")


# ---------------------------------------------------------------------------------------------- 401
@pytest.fixture(scope="module")
def keyed(serve_models):
    with run_server(serve_models, api_key="sesame") as running:
        yield running


def test_api_key(keyed):
    url = keyed.base_url
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "sesame"}):
        assert_error(httpx.post(url + "/v1/completions", json=COMPLETION, headers=headers), 401, code="invalid_api_key")
        assert_error(httpx.get(url + "/v1/models", headers=headers), 401)
        assert_error(httpx.get(url + "/metrics", headers=headers), 401)
        assert_error(httpx.post(url + "/api/tokenize", json={"text": "x"}, headers=headers), 401)
    assert httpx.get(url + "/health").status_code == 200
    good = {"authorization": "Bearer sesame"}
    assert httpx.post(url + "/v1/completions", json=COMPLETION, headers=good).status_code == 200
    assert httpx.get(url + "/metrics", headers=good).status_code == 200


def test_api_key_with_openai_client(keyed):
    bad = openai.OpenAI(base_url=keyed.base_url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "x"}], max_tokens=2)
    good = openai.OpenAI(base_url=keyed.base_url + "/v1", api_key="sesame", max_retries=0)
    assert good.completions.create(model=CHAT, prompt="x", max_tokens=2).usage.completion_tokens >= 1


# ---------------------------------------------------------------------------------------------- 413
@pytest.fixture(scope="module")
def small_body(serve_models):
    with run_server(serve_models, max_body_bytes=2048) as running:
        yield running


def chunked(data: bytes, size: int = 256):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_oversized_body_is_413(small_body):
    url = small_body.base_url + "/v1/completions"
    big = json.dumps({**COMPLETION, "prompt": "a" * 5000}).encode()
    headers = {"content-type": "application/json"}
    assert_error(httpx.post(url, content=big, headers=headers), 413)
    # no Content-Length: a chunked upload is cut off once it passes the limit
    r = httpx.post(url, content=chunked(big), headers=headers)
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert_error(r, 413)
    # under the limit, chunked or not, the request goes through
    fits = json.dumps({**COMPLETION, "prompt": "ROMEO: " * 5, "stop": ["x" * 600]}).encode()  # > 512 B
    assert httpx.post(url, content=fits, headers=headers).status_code == 200
    assert httpx.post(url, content=chunked(fits), headers=headers).status_code == 200
    client = openai.OpenAI(base_url=small_body.base_url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(model=CHAT, prompt="a" * 5000, max_tokens=1)
    assert e.value.status_code == 413


# ---------------------------------------------------------------------------------------------- robustness
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_request_that_breaks_the_sampler_does_not_kill_the_model(serve_models):
    from kiln.generate.batcher import Request
    from kiln.generate.sampling import SamplingParams

    with run_server(serve_models) as running:
        url = running.base_url + "/v1/completions"
        assert httpx.post(url, json=COMPLETION).status_code == 200
        batcher = running.app.state.registry.loaded[CHAT].batcher
        events = []
        batcher.submit(Request([1, 2, 3], SamplingParams(temperature=1e-300, max_new_tokens=4), events.append))
        try:
            r = httpx.post(url, json=COMPLETION, timeout=3)
        except httpx.TimeoutException:
            pytest.fail("the model's worker thread died: requests hang")
        assert r.status_code == 200
        assert events and events[-1].finish_reason == "error"  # the bad request ended too, with a reason
