"""Fuzzing `kiln serve`: no request, valid or not, may get a 5xx.

Schemathesis generates requests for every operation of the app's own OpenAPI schema (/openapi.json) and
sends them to the live server; hypothesis then throws mostly-valid bodies with arbitrary JSON mixed in at
the generation routes. Generated lengths are kept small (max_tokens <= 4) and model names are steered to
the real models half of the time, so the fuzzing reaches generation, not just the 404 for an unknown model.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

MODELS = ["bpe-chat", "char"]


def tame(body: Any) -> None:
    """Small generation lengths, and a real model for some of the generated names."""
    if not isinstance(body, dict):
        return
    for key in ("max_tokens", "max_completion_tokens"):
        if isinstance(body.get(key), int) and not isinstance(body.get(key), bool) and body[key] > 4:
            body[key] = 1 + body[key] % 4
    if isinstance(body.get("model"), str) and len(body["model"]) % 3 != 2:
        body["model"] = MODELS[len(body["model"]) % 3]


def test_no_server_errors(server):
    """Every operation of /openapi.json, 25 generated requests each. Schemathesis' own pytest plugin is not
    used: it breaks on newer pytest releases, and a plain hypothesis loop over its strategies is the same test."""
    api = schemathesis.openapi.from_url(server.base_url + "/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            tame(case.body)
            if case.path_parameters and "name" in case.path_parameters and len(str(case.path_parameters["name"])) % 2:
                case.path_parameters["name"] = "char"
            case.call_and_validate(checks=[not_a_server_error], timeout=60)

        check()


# ---------------------------------------------------------------------------------------------- hypothesis
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
small_text = st.text(max_size=30)
token_ids = st.lists(st.integers(-2, 420), min_size=0, max_size=8)


def floats(lo: float, hi: float) -> st.SearchStrategy:
    """Floats in [lo, hi], with the edges and tiny positives (which overflow a sampler) drawn often."""
    edges = st.sampled_from([lo, hi, 0.0, 5e-324, 1e-300, 1e-40, 1e-8, 1e-5, 0.01])
    return st.one_of(st.floats(lo, hi, allow_nan=False), edges)


def field(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a plausible value, sometimes any JSON at all."""
    return st.one_of(valid, valid, valid, json_values)


SAMPLING = {
    "temperature": field(floats(-1, 3)),
    "top_p": field(floats(-0.5, 1.5)),
    "top_k": field(st.integers(-3, 500)),
    "min_p": field(floats(-0.5, 1.5)),
    "repetition_penalty": field(floats(-1, 5)),
    "n": field(st.integers(-1, 20)),
    "seed": field(st.integers(-(2**64), 2**64)),
    "stop": field(st.one_of(small_text, st.lists(small_text, max_size=3))),
    "stream": field(st.booleans()),
    "stream_options": field(st.fixed_dictionaries({"include_usage": st.booleans()})),
    "ignore_eos": field(st.booleans()),
    "return_token_ids": field(st.booleans()),
    "presence_penalty": field(floats(-3, 3)),
    "max_tokens": field(st.integers(-2, 4)),
}
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]), "content": field(small_text)}
)
COMPLETION = {
    **SAMPLING,
    "prompt": field(
        st.one_of(small_text, token_ids, st.lists(small_text, max_size=3), st.lists(token_ids, max_size=3))
    ),
    "logprobs": field(st.integers(-1, 25)),
    "echo": field(st.booleans()),
    "suffix": field(small_text),
}
CHAT = {
    **SAMPLING,
    "messages": field(st.lists(message, max_size=3)),
    "logprobs": field(st.booleans()),
    "top_logprobs": field(st.integers(-1, 25)),
    "max_completion_tokens": field(st.integers(-2, 4)),
}
NEXT = {"prompt": field(st.one_of(small_text, token_ids)), "top_n": field(st.integers(-1, 1200))}


def bodies(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    optional = st.fixed_dictionaries({}, optional=fields)
    model = st.one_of(st.sampled_from(MODELS), st.sampled_from(MODELS), json_values)
    return st.one_of(st.builds(lambda m, rest: {"model": m, **rest}, model, optional), json_values)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        yield client


def check(http: httpx.Client, path: str, body: Any) -> None:
    r = http.post(path, json=body)
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
    elif r.headers["content-type"].startswith("text/event-stream"):
        assert '"error"' not in r.text and r.text.rstrip().endswith("data: [DONE]"), r.text


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies(COMPLETION))
def test_completions_fuzz(http, body):
    check(http, "/v1/completions", body)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies(CHAT))
def test_chat_fuzz(http, body):
    check(http, "/v1/chat/completions", body)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=bodies(NEXT),
    tokenize=st.fixed_dictionaries(
        {"text": field(small_text)},
        optional={
            "tokenizers": field(
                st.lists(
                    st.sampled_from(
                        ["char", "byte", "word", "cl100k_base", "gpt2", "model:char", "model:bpe-chat", "nope"]
                    ),
                    max_size=3,
                )
            )
        },
    ),
)
def test_playground_fuzz(http, body, tokenize):
    check(http, "/api/next_token", body)
    check(http, "/api/tokenize", tokenize)
