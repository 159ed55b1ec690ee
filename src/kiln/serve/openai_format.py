"""Response bodies in OpenAI's shapes: completions, chat completions, their stream chunks, logprobs."""

from __future__ import annotations

import time
import uuid
from typing import Any

from kiln.serve.generation import Choice
from kiln.serve.models import LoadedModel

FINGERPRINT = "kiln"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def token_bytes(lm: LoadedModel, token_id: int) -> bytes:
    try:
        return lm.tokenizer.id_to_bytes(token_id)
    except (IndexError, KeyError, ValueError):
        return b""  # an id the model has but its tokenizer does not (a vocabulary padded for speed)


def token_text(lm: LoadedModel, token_id: int) -> str:
    return token_bytes(lm, token_id).decode("utf-8", errors="replace")


def completion_logprobs(
    lm: LoadedModel,
    tokens: list[int],
    logprobs: list[float],
    tops: list[list[tuple[int, float]]],
    offset: int,
    with_ids: bool,
) -> dict[str, Any]:
    """The legacy completions `logprobs` object; `offset` is where the first token's text starts."""
    texts = [token_text(lm, t) for t in tokens]
    offsets = []
    for t in texts:
        offsets.append(offset)
        offset += len(t)
    out: dict[str, Any] = {
        "tokens": texts,
        "token_logprobs": logprobs,
        "top_logprobs": [{token_text(lm, i): lp for i, lp in top} for top in tops],
        "text_offset": offsets,
    }
    if with_ids:
        # Strings collide ("\ufffd" for every partial character); the playground branches by id.
        out["top_tokens"] = [[{"id": i, "token": token_text(lm, i), "logprob": lp} for i, lp in top] for top in tops]
    return out


def chat_logprobs(
    lm: LoadedModel,
    tokens: list[int],
    logprobs: list[float],
    tops: list[list[tuple[int, float]]],
    with_ids: bool,
) -> dict[str, Any]:
    def entry(token_id: int, lp: float) -> dict[str, Any]:
        raw = token_bytes(lm, token_id)
        e: dict[str, Any] = {"token": raw.decode("utf-8", errors="replace"), "logprob": lp, "bytes": list(raw)}
        if with_ids:
            e["id"] = token_id
        return e

    content = []
    for t, lp, top in zip(tokens, logprobs, tops, strict=True):
        e = entry(t, lp)
        e["top_logprobs"] = [entry(i, v) for i, v in top]
        content.append(e)
    return {"content": content}


def completion_body(
    lm: LoadedModel,
    rid: str,
    choices: list[Choice],
    usage: dict[str, int],
    *,
    logprobs: int | None,
    with_ids: bool,
    prefix: list[str],
    prompt_ids: list[list[int]],
) -> dict[str, Any]:
    out = []
    for c in choices:
        text = prefix[c.index] + c.text
        choice: dict[str, Any] = {
            "index": c.index,
            "text": text,
            "logprobs": None,
            "finish_reason": c.finish_reason,
        }
        if logprobs is not None:
            choice["logprobs"] = completion_logprobs(lm, c.tokens, c.logprobs, c.top, len(prefix[c.index]), with_ids)
        if with_ids:
            choice["token_ids"] = c.tokens
            choice["prompt_token_ids"] = prompt_ids[c.index]
        out.append(choice)
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": lm.name,
        "system_fingerprint": FINGERPRINT,
        "choices": out,
        "usage": usage,
    }


def chat_body(
    lm: LoadedModel,
    rid: str,
    choices: list[Choice],
    usage: dict[str, int],
    *,
    logprobs: bool,
    with_ids: bool,
    prompt_ids: list[int] | None = None,
) -> dict[str, Any]:
    out = []
    for c in choices:
        choice: dict[str, Any] = {
            "index": c.index,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": chat_logprobs(lm, c.tokens, c.logprobs, c.top, with_ids) if logprobs else None,
            "finish_reason": c.finish_reason,
        }
        if with_ids:
            choice["token_ids"] = c.tokens
            choice["prompt_token_ids"] = prompt_ids
        out.append(choice)
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": lm.name,
        "system_fingerprint": FINGERPRINT,
        "choices": out,
        "usage": usage,
    }


def chunk(rid: str, obj: str, model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict:
    body: dict[str, Any] = {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
    }
    body["usage"] = usage
    return body
