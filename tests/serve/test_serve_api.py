"""`kiln serve`'s own routes: /health, /metrics (Prometheus), and the playground's /api/tokenizers,
/api/tokenize and /api/next_token, against the session's live server."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import httpx
import pytest
import tiktoken
import tiktoken.load
import tiktoken_ext.openai_public as openai_public
from prometheus_client.parser import text_string_to_metric_families
from serve_support import VOCABS

CHAT = "bpe-chat"
TEXT = "Hello wörld 🎉 — O Romeo, Romeo!\n\twherefore art thou <|endoftext|> 12345 Ω"


def post(server, path: str, body: dict) -> dict:
    r = httpx.post(server.base_url + path, json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def samples(server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(server.base_url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_health(server):
    r = httpx.get(server.base_url + "/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_metrics_count_requests_and_tokens(server):
    before = samples(server)
    ok = ("kiln_requests_total", (("route", "/v1/completions"), ("status", "200")))
    bad = ("kiln_requests_total", (("route", "/v1/completions"), ("status", "400")))
    body = post(server, "/v1/completions", {"model": CHAT, "prompt": "ROMEO:", "max_tokens": 5, "ignore_eos": True})
    httpx.post(server.base_url + "/v1/completions", json={"model": CHAT, "prompt": "x", "temperature": -1})
    after = samples(server)
    names = {name for name, _ in after}
    for name in (
        "kiln_requests_total",
        "kiln_completion_tokens_total",
        "kiln_prompt_tokens_total",
        "kiln_time_to_first_token_seconds_count",
        "kiln_time_to_first_token_seconds_bucket",
        "kiln_queue_depth",
        "kiln_running_sequences",
        "kiln_tokens_per_second_count",
    ):
        assert name in names, name
    assert after[ok] == before.get(ok, 0) + 1
    assert after[bad] == before.get(bad, 0) + 1
    usage = body["usage"]
    tokens = ("kiln_completion_tokens_total", ())
    prompt = ("kiln_prompt_tokens_total", ())
    assert after[tokens] - before.get(tokens, 0) == usage["completion_tokens"] == 5
    assert after[prompt] - before.get(prompt, 0) == usage["prompt_tokens"]
    ttft = ("kiln_time_to_first_token_seconds_count", ())
    assert after[ttft] == before.get(ttft, 0) + 1
    ttft_sum = ("kiln_time_to_first_token_seconds_sum", ())
    assert after[ttft_sum] > before.get(ttft_sum, 0)
    assert after[("kiln_queue_depth", ())] == 0 and after[("kiln_running_sequences", ())] == 0


def test_tokenizers_listed(server):
    names = httpx.get(server.base_url + "/api/tokenizers").json()["tokenizers"]
    assert {"model:bpe-chat", "model:char", "char", "byte", "word", "cl100k_base", "gpt2"} <= set(names)


@pytest.mark.parametrize("name", ["char", "byte", "word", "model:bpe-chat", "cl100k_base", "gpt2", "model:char"])
def test_tokenize_spans_cover_the_text(server, name):
    text = "O Romeo, Romeo!\nwherefore art thou" if name == "model:char" else TEXT  # char knows Shakespeare's chars
    (result,) = post(server, "/api/tokenize", {"text": text, "tokenizers": [name]})["results"]
    raw = text.encode("utf-8")
    tokens = result["tokens"]
    assert result["tokenizer"] == name and result["count"] == len(tokens) > 0
    assert result["bytes"] == len(raw) and result["characters"] == len(text)
    assert tokens[0]["start"] == 0 and tokens[-1]["end"] == len(raw)
    assert all(a["end"] == b["start"] for a, b in itertools.pairwise(tokens))
    assert all(t["start"] < t["end"] for t in tokens)
    assert b"".join(raw[t["start"] : t["end"]] for t in tokens) == raw
    for t in tokens:
        assert t["text"] == raw[t["start"] : t["end"]].decode("utf-8", errors="replace")


def tiktoken_encoding(name: str, local: Path) -> tiktoken.Encoding:
    """tiktoken's own Encoding (its pattern and special tokens) over the local vocabulary file, offline."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(openai_public, "load_tiktoken_bpe", lambda url, **_: tiktoken.load.load_tiktoken_bpe(str(local)))
        return tiktoken.Encoding(**getattr(openai_public, name)())


def test_tokenize_cl100k_ids_equal_tiktoken(server):
    enc = tiktoken_encoding("cl100k_base", VOCABS / "cl100k_base.tiktoken")
    (result,) = post(server, "/api/tokenize", {"text": TEXT, "tokenizers": ["cl100k_base"]})["results"]
    # special-token text is ordinary text, as in a prompt: the page shows what the model would receive
    assert [t["id"] for t in result["tokens"]] == enc.encode_ordinary(TEXT)
    assert 100257 not in [t["id"] for t in result["tokens"]]


def test_tokenize_matches_what_a_prompt_becomes(server):
    (result,) = post(server, "/api/tokenize", {"text": TEXT, "tokenizers": [f"model:{CHAT}"]})["results"]
    body = {"model": CHAT, "prompt": TEXT, "max_tokens": 1, "return_token_ids": True}
    prompt_ids = post(server, "/v1/completions", body)["choices"][0]["prompt_token_ids"]
    assert [t["id"] for t in result["tokens"]] == prompt_ids


def test_tokenize_several_at_once_and_defaults(server):
    results = post(server, "/api/tokenize", {"text": "ab c"})["results"]
    assert [r["tokenizer"] for r in results] == ["char", "byte", "word"]
    assert [t["id"] for t in results[0]["tokens"]] == [ord(c) for c in "ab c"]


def test_tokenize_text_a_model_cannot_encode(server):
    r = httpx.post(server.base_url + "/api/tokenize", json={"text": "Ω", "tokenizers": ["model:char"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "text"


@pytest.mark.parametrize(("model", "prompt"), [(CHAT, "ROMEO:"), (CHAT, "The king"), ("char", "ROMEO:\nI")])
def test_next_token_distribution(server, model, prompt):
    vocab = 400 if model == CHAT else 65
    full = post(server, "/api/next_token", {"model": model, "prompt": prompt, "top_n": 1000})
    assert full["vocab_size"] == vocab and len(full["tokens"]) == vocab
    logits = [t["logit"] for t in full["tokens"]]
    assert logits == sorted(logits, reverse=True)
    probs = [math.exp(v - full["logsumexp"]) for v in logits]
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)
    top = post(server, "/api/next_token", {"model": model, "prompt": prompt, "top_n": 5})
    assert [t["id"] for t in top["tokens"]] == [t["id"] for t in full["tokens"][:5]]
    assert sum(math.exp(t["logit"] - top["logsumexp"]) for t in top["tokens"]) <= 1 + 1e-6
    greedy = post(
        server,
        "/v1/completions",
        {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "return_token_ids": True, "logprobs": 1},
    )
    choice = greedy["choices"][0]
    assert choice["token_ids"] == [top["tokens"][0]["id"]]
    assert choice["prompt_token_ids"] == top["prompt_ids"]
    expected_logprob = top["tokens"][0]["logit"] - top["logsumexp"]
    assert choice["logprobs"]["token_logprobs"][0] == pytest.approx(expected_logprob, abs=1e-4)
    by_ids = post(server, "/api/next_token", {"model": model, "prompt": top["prompt_ids"], "top_n": 5})
    assert by_ids["tokens"] == top["tokens"]


def test_prompt_token_ids_come_back_once_per_choice(server):
    """With return_token_ids a client can branch by id: the prompt's ids come with the first chunk of each
    choice (streaming) or with each choice (not streaming), and equal what the tokenizer endpoint gives."""
    import json as _json

    base = server.base_url
    ids = httpx.post(base + "/api/tokenize", json={"text": "ROMEO:", "tokenizers": ["model:bpe-chat"]}).json()
    expected = [t["id"] for t in ids["results"][0]["tokens"]]
    body = {"model": "bpe-chat", "prompt": "ROMEO:", "max_tokens": 4, "temperature": 0, "return_token_ids": True}
    seen: dict[int, list] = {}
    with httpx.stream("POST", base + "/v1/completions", json={**body, "stream": True, "n": 2}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                for ch in _json.loads(line[6:])["choices"]:
                    if "prompt_token_ids" in ch:
                        assert ch["index"] not in seen
                        seen[ch["index"]] = ch["prompt_token_ids"]
    assert seen == {0: expected, 1: expected}
    chat = {"model": "bpe-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
            "return_token_ids": True}  # fmt: skip
    out = httpx.post(base + "/v1/chat/completions", json=chat).json()
    prompt_ids = out["choices"][0]["prompt_token_ids"]
    assert len(prompt_ids) == out["usage"]["prompt_tokens"]
