"""The playground: its page and static files, and the helpers only it calls — `/api/tokenizers`,
`/api/tokenize` (the tokenizer visualiser), `/api/next_token` (the sampling explainer) and `/api/chat_template`
(the Chat tab's "show template").

The static files are ES modules, which browsers run only when served with a JavaScript MIME type; Python's
`mimetypes` takes that from the system's tables, which can say otherwise (Windows' registry often does), so
`.js` is set here rather than guessed.
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Scope

from kiln.serve import openai_format as fmt
from kiln.serve.chat import render_chat
from kiln.serve.errors import bad_param
from kiln.serve.protocol import ChatTemplateRequest, NextTokenRequest, TokenizeRequest
from kiln.serve.state import Server
from kiln.serve.validate import check_prompt, default_start, encode, require_chat_template
from kiln.serve.visualise import BUILTIN, MAX_LISTED_TOKENS, MAX_TOKENIZE_CHARS, pretrained, tokenize, vocab_files
from kiln.tokenizer import Tokenizer

STATIC = resources.files("kiln.serve") / "static"
JAVASCRIPT = "text/javascript; charset=utf-8"

router = APIRouter()


class StaticModules(StaticFiles):
    """The page's files, with `.js` always served as JavaScript (module scripts are refused otherwise)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if path.endswith(".js") and response.status_code in (200, 304):
            response.headers["content-type"] = JAVASCRIPT
        return response


def static_files() -> StaticModules:
    """The app mounts this at /static."""
    return StaticModules(directory=str(STATIC))


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(str(STATIC / "index.html"))


@router.get("/api/tokenizers")
async def list_tokenizers(server: Server) -> dict[str, Any]:
    found = await server.available()
    names = [f"model:{n}" for n in found] + list(BUILTIN) + sorted(vocab_files(server.config.vocab_dir))
    return {"tokenizers": names}


@router.post("/api/tokenize", response_model=None)
async def tokenize_text(body: TokenizeRequest, server: Server) -> Response:
    """Tokens of `text` under each tokenizer asked for. The work is bounded (text x tokenizers at most
    MAX_TOKENIZE_CHARS, at most MAX_LISTED_TOKENS tokens listed) and done off the event loop, JSON included."""
    names = body.tokenizers or ["char", "byte", "word"]
    work = len(body.text) * len(names)
    if work > MAX_TOKENIZE_CHARS:
        raise bad_param(
            "text",
            f"text x tokenizers is {work:,} characters; at most {MAX_TOKENIZE_CHARS:,} per request "
            "(send a shorter text or fewer tokenizers)",
        )
    tokenizers: list[tuple[str, Tokenizer | None]] = []
    for name in names:
        if name in BUILTIN:
            tokenizers.append((name, None))
        elif name.startswith("model:"):
            tokenizers.append((name, (await server.load(name[len("model:") :])).tokenizer))
        else:
            tok = await run_in_threadpool(pretrained, name, server.config.vocab_dir)
            if tok is None:
                raise bad_param("tokenizers", f"unknown or unavailable tokenizer '{name}'; see GET /api/tokenizers")
            tokenizers.append((name, tok))

    def work_off_loop() -> bytes:
        results, left = [], MAX_LISTED_TOKENS
        for name, tok in tokenizers:
            try:
                result = tokenize(name, tok, body.text, limit=left)
            except ValueError as e:
                raise bad_param("text", f"{name} cannot encode this text: {e}") from None
            left -= len(result["tokens"])
            results.append(result)
        return json.dumps({"results": results}, ensure_ascii=False).encode("utf-8")

    return Response(await server.cpu(work_off_loop), media_type="application/json")


@router.post("/api/chat_template")
async def chat_template(body: ChatTemplateRequest, server: Server) -> dict[str, Any]:
    """The ids `/v1/chat/completions` would prompt the model with for these messages, and their text with the
    special tokens spelled out: what the model actually reads."""
    lm = await server.load(body.model)
    require_chat_template(lm)
    ids = await server.cpu(render_chat, lm, body.messages)
    return {
        "model": lm.name,
        "ids": ids,
        "text": lm.tokenizer.decode(ids),
        "tokens": [fmt.token_text(lm, i) for i in ids[:MAX_LISTED_TOKENS]],
    }


@router.post("/api/next_token")
async def next_token(body: NextTokenRequest, server: Server) -> dict[str, Any]:
    """The raw next-token distribution (top_n logits and the log-normaliser of all of them): the page
    applies temperature, top-k, top-p and min-p itself, so its bars follow the sliders without a
    round trip."""
    lm = await server.load(body.model)
    ids = encode(lm, body.prompt) if isinstance(body.prompt, str) else list(body.prompt)
    ids = check_prompt(lm, ids or default_start(lm))

    def probe(model: Any) -> tuple[list[float], list[int], float]:
        import torch

        logits = model(torch.tensor([ids], device=lm.batcher.device))[0][0, -1].float()
        top = logits.topk(min(body.top_n, logits.numel()))
        return top.values.tolist(), top.indices.tolist(), float(torch.logsumexp(logits, 0))

    values, top_ids, lse = await asyncio.wrap_future(lm.batcher.call(probe))
    return {
        "model": lm.name,
        "prompt_ids": ids,
        "vocab_size": lm.model.config.vocab_size,
        "logsumexp": lse,
        "tokens": [{"id": i, "token": fmt.token_text(lm, i), "logit": v} for i, v in zip(top_ids, values, strict=True)],
    }
