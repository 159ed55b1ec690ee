"""The FastAPI app: OpenAI's /v1 routes, the playground's /api routes, /health, /metrics and the page.

Everything slow happens off the event loop: loading a model in a thread pool, decoding on each model's
batcher thread. The loop only parses, validates, and moves events to clients, so one slow client or a
model loading never stalls the others.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiln.generate.sampling import SamplingParams
from kiln.model.checkpoint import CheckpointError, read_config, resolve_checkpoint
from kiln.serve import openai_format as fmt
from kiln.serve.chat import chat_stop_ids, render_chat
from kiln.serve.errors import APIError, bad_param, error_body
from kiln.serve.generation import Generation
from kiln.serve.metrics import Metrics
from kiln.serve.models import CHAT_TOKENS, LoadedModel, ModelRegistry
from kiln.serve.protocol import ChatRequest, CompletionRequest, NextTokenRequest, SamplingFields, TokenizeRequest
from kiln.serve.visualise import BUILTIN, pretrained, tokenize, vocab_files

log = logging.getLogger("kiln.serve")
MAX_CHOICES = 64
MIN_TEMPERATURE = 1e-5  # below this, sampling is greedy decoding


@dataclass
class ServeConfig:
    """Options of `kiln serve`."""

    models: Path
    api_key: str | None = None
    max_batch: int = 32
    max_queue: int = 256
    max_memory_gb: float = 4.0
    max_body_bytes: int = 4 << 20
    vocab_dir: Path | None = None


class BodyLimit:
    """413 for a body over `limit` bytes, by its Content-Length or, for a chunked upload, as it arrives."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = JSONResponse(error_body(413, f"the request body is larger than {self.limit} bytes"), status_code=413)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                await too_big(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server delivers no more than Content-Length bytes
            return
        # No Content-Length (a chunked upload): read the body here, up to the limit, then replay it. An error
        # raised from inside `receive` would reach FastAPI's body parsing, which turns any error into a 400.
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


def _param_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    # pydantic adds the union member it tried ("str", "constrained-str", "list[int]"); keep the field path only
    keep = [
        p
        for p in parts
        if not any(ch in p for ch in "[]")
        and not p.startswith("constrained-")
        and p not in ("str", "int", "float", "bool")
    ]
    return ".".join(keep) or "body"


def create_app(config: ServeConfig) -> FastAPI:
    registry = ModelRegistry(
        config.models,
        max_bytes=int(config.max_memory_gb * (1 << 30)),
        max_batch=config.max_batch,
        max_queue=config.max_queue,
    )
    metrics = Metrics(registry.queue_depth, registry.active)
    vocab_dir = config.vocab_dir

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        registry.close()

    app = FastAPI(title="kiln", version="1", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.registry = registry
    app.state.config = config

    # ------------------------------------------------------------------ errors, auth, accounting
    @app.exception_handler(APIError)
    async def _api_error(_: Request, e: APIError) -> JSONResponse:
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        param = _param_name(tuple(first.get("loc", ())))
        msg = f"{param}: {first.get('msg', 'invalid value')}"
        if first.get("type") == "json_invalid":
            param, msg = "body", f"the body is not valid JSON ({first.get('msg')})"
        return JSONResponse(error_body(400, msg, param=param, code="invalid_value"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(e.status_code, str(e.detail)), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _bug(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body(500, f"internal error: {type(e).__name__}"), status_code=500)

    protected = ("/v1", "/api", "/metrics")

    @app.middleware("http")
    async def _auth_and_count(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if config.api_key and path.startswith(protected):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {config.api_key}".encode()):
                response: Response = APIError(
                    401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key"
                ).response()
                metrics.requests.labels(route=path, status="401").inc()
                return response
        response = await call_next(request)
        route = request.scope.get("route")
        label = getattr(route, "path", "other")
        metrics.requests.labels(route=label, status=str(response.status_code)).inc()
        return response

    # ------------------------------------------------------------------ models
    async def load(name: str) -> LoadedModel:
        try:
            return await run_in_threadpool(registry.get, name)
        except KeyError:
            raise APIError(404, f"the model '{name}' does not exist", param="model", code="model_not_found") from None
        except (CheckpointError, FileNotFoundError, ValueError) as e:
            raise APIError(
                503, f"the model '{name}' cannot be loaded: {e}", param="model", code="model_unavailable"
            ) from e

    def model_card(name: str, path: Path) -> dict[str, Any]:
        card: dict[str, Any] = {
            "id": name,
            "object": "model",
            "created": registry.created(name, path),
            "owned_by": "kiln",
        }
        lm = registry.loaded.get(name)
        try:
            cfg, _ = read_config(resolve_checkpoint(path))
            card["context_length"] = cfg.block_size
            card["vocab_size"] = cfg.vocab_size
        except CheckpointError:
            pass
        card["loaded"] = lm is not None
        card["chat"] = lm.has_chat_template if lm is not None else _has_chat_tokens(path)
        return card

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models_loaded": len(registry.loaded)}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        found = await run_in_threadpool(registry.available)
        return {"object": "list", "data": [model_card(n, p) for n, p in found.items()]}

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> dict[str, Any]:
        found = await run_in_threadpool(registry.available)
        if name not in found:
            raise APIError(404, f"the model '{name}' does not exist", param="model", code="model_not_found")
        return model_card(name, found[name])

    # ------------------------------------------------------------------ generation
    def params_for(body: SamplingFields, lm: LoadedModel, max_tokens: int, stop_ids: tuple[int, ...], logprobs: int):
        top_k = body.top_k or 0
        temperature = 1.0 if body.temperature is None else body.temperature
        if temperature < MIN_TEMPERATURE:
            # Greedy, as in vLLM: logits / 1e-40 overflow float32 to inf, the softmax gives NaN, and
            # torch.multinomial raises on the batcher's worker thread, which kills the model for everyone.
            temperature = 0.0
        return SamplingParams(
            temperature=temperature,
            top_k=0 if top_k < 0 else top_k,
            top_p=1.0 if body.top_p is None else body.top_p,
            min_p=body.min_p or 0.0,
            repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
            max_new_tokens=max_tokens,
            stop_token_ids=stop_ids,
            stop=body.stops(),
            logprobs=logprobs,
        ).validate()

    def encode(lm: LoadedModel, text: str) -> list[int]:
        try:
            return lm.tokenizer.encode(text)
        except ValueError as e:
            raise bad_param("prompt", f"the prompt cannot be encoded by this model's tokenizer: {e}") from None

    def check_prompt(lm: LoadedModel, ids: list[int], param: str = "prompt") -> list[int]:
        vocab = lm.model.config.vocab_size
        bad = next((i for i in ids if i >= vocab), None)
        if bad is not None:
            raise bad_param(param, f"token id {bad} is not in this model's vocabulary of {vocab}")
        if len(ids) >= lm.context:
            raise APIError(
                400,
                f"this model's maximum context length is {lm.context} tokens; the prompt has {len(ids)} tokens "
                f"(at most {lm.context - 1}, to leave room for one new token)",
                param=param,
                code="context_length_exceeded",
            )
        return ids

    def completion_prompts(lm: LoadedModel, body: CompletionRequest) -> tuple[list[list[int]], list[str]]:
        p = body.prompt
        if isinstance(p, str):
            texts: list[str | None] = [p]
        elif p and all(isinstance(x, int) for x in p):
            texts = [None]
            rows: list[list[int]] = [list(p)]  # type: ignore[arg-type]
        elif p and all(isinstance(x, str) for x in p):
            texts = list(p)  # type: ignore[arg-type]
        else:
            texts = [None] * len(p)
            rows = [list(x) for x in p]  # type: ignore[union-attr]
        if texts and texts[0] is not None:
            rows = []
            for t in texts:
                ids = encode(lm, t or "")
                if not ids:
                    if not lm.eos_ids:
                        raise bad_param(
                            "prompt", "the prompt is empty and this model has no <|endoftext|> to start from"
                        )
                    ids = [lm.eos_ids[0]]
                rows.append(ids)
            shown = [t or "" for t in texts]
        else:
            shown = [lm.tokenizer.decode(r) for r in rows]
        return [check_prompt(lm, r) for r in rows], shown

    def check_common(body: SamplingFields, n_prompts: int) -> int:
        n = body.n or 1
        if n * n_prompts > MAX_CHOICES:
            raise bad_param("n", f"n x prompts = {n * n_prompts} choices; at most {MAX_CHOICES} per request")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(body, name):
                raise bad_param(name, f"{name} is not supported by kiln; use repetition_penalty (an extra body field)")
        return n

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        if body.suffix:
            raise bad_param("suffix", "suffix (insertion) is not supported: kiln's models are left-to-right only")
        if body.echo and body.logprobs is not None:
            raise bad_param("echo", "echo together with logprobs is not supported")
        lm = await load(body.model)
        prompts, shown = completion_prompts(lm, body)
        n = check_common(body, len(prompts))
        stop_ids = () if body.ignore_eos else lm.eos_ids
        max_tokens = body.max_tokens or 16
        params = params_for(body, lm, max_tokens, stop_ids, body.logprobs or 0)
        rows = [p for p in prompts for _ in range(n)]
        prefix = [(shown[i // n] if body.echo else "") for i in range(len(rows))]
        gen = Generation(lm, rows, [params] * len(rows), body.seed, metrics, n=n)
        gen.submit()
        rid = fmt.new_id("cmpl")
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return sse(completion_chunks(lm, gen, rid, body, prefix, include_usage))
        await collect(gen, request)
        return fmt.completion_body(
            lm, rid, gen.choices, gen.usage(), logprobs=body.logprobs, with_ids=body.return_token_ids,
            prefix=prefix, prompt_ids=rows,
        )  # fmt: skip

    async def completion_chunks(
        lm: LoadedModel, gen: Generation, rid: str, body: CompletionRequest, prefix: list[str], include_usage: bool
    ) -> AsyncIterator[dict[str, Any]]:
        offsets = [len(p) for p in prefix]
        sent_prompt: set[int] = set()
        if any(prefix):
            for i, p in enumerate(prefix):
                yield fmt.chunk(
                    rid, "text_completion", lm.name, [{"index": i, "text": p, "logprobs": None, "finish_reason": None}]
                )
        async for ev in gen.events():
            if ev.finish_reason == "cancelled":
                continue
            choice: dict[str, Any] = {
                "index": ev.index,
                "text": ev.text,
                "logprobs": None,
                "finish_reason": ev.finish_reason,
            }
            if body.logprobs is not None:
                choice["logprobs"] = fmt.completion_logprobs(
                    lm, [ev.token_id], [ev.logprob], [ev.top], offsets[ev.index], body.return_token_ids
                )
            if body.return_token_ids:
                choice["token_ids"] = [ev.token_id]
                if ev.index not in sent_prompt:  # once per choice, as vLLM does
                    sent_prompt.add(ev.index)
                    choice["prompt_token_ids"] = gen.requests[ev.index].prompt
            offsets[ev.index] += len(fmt.token_text(lm, ev.token_id))
            yield fmt.chunk(rid, "text_completion", lm.name, [choice])
        if include_usage:
            yield fmt.chunk(rid, "text_completion", lm.name, [], gen.usage())

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatRequest, request: Request) -> Any:
        lm = await load(body.model)
        if not lm.has_chat_template:
            raise APIError(
                400,
                f"the model '{lm.name}' has no chat template (its tokenizer lacks {' and '.join(CHAT_TOKENS)}): "
                "it is a base model; use /v1/completions",
                param="model",
                code="no_chat_template",
            )
        prompt = check_prompt(lm, render_chat(lm, body.messages), "messages")
        n = check_common(body, 1)
        room = lm.context - len(prompt)
        max_tokens = body.max_completion_tokens or body.max_tokens or room
        stop_ids = chat_stop_ids(lm) if not body.ignore_eos else chat_stop_ids(lm)[:1]
        top = body.top_logprobs or 0
        if top and not body.logprobs:
            raise bad_param("top_logprobs", "top_logprobs needs logprobs: true")
        params = params_for(body, lm, max_tokens, stop_ids, top)
        gen = Generation(lm, [prompt] * n, [params] * n, body.seed, metrics, n=n)
        gen.submit()
        rid = fmt.new_id("chatcmpl")
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return sse(chat_chunks(lm, gen, rid, body, n, include_usage))
        await collect(gen, request)
        return fmt.chat_body(
            lm, rid, gen.choices, gen.usage(), logprobs=bool(body.logprobs), with_ids=body.return_token_ids,
            prompt_ids=prompt,
        )  # fmt: skip

    async def chat_chunks(
        lm: LoadedModel, gen: Generation, rid: str, body: ChatRequest, n: int, include_usage: bool
    ) -> AsyncIterator[dict[str, Any]]:
        sent_prompt: set[int] = set()
        obj = "chat.completion.chunk"
        for i in range(n):
            yield fmt.chunk(
                rid,
                obj,
                lm.name,
                [{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}],
            )
        async for ev in gen.events():
            if ev.finish_reason == "cancelled":
                continue
            choice: dict[str, Any] = {
                "index": ev.index,
                "delta": {"content": ev.text},
                "logprobs": None,
                "finish_reason": ev.finish_reason,
            }
            if body.logprobs:
                choice["logprobs"] = fmt.chat_logprobs(lm, [ev.token_id], [ev.logprob], [ev.top], body.return_token_ids)
            if body.return_token_ids:
                choice["token_ids"] = [ev.token_id]
                if ev.index not in sent_prompt:
                    sent_prompt.add(ev.index)
                    choice["prompt_token_ids"] = gen.requests[ev.index].prompt
            yield fmt.chunk(rid, obj, lm.name, [choice])
        if include_usage:
            yield fmt.chunk(rid, obj, lm.name, [], gen.usage())

    async def collect(gen: Generation, request: Request) -> None:
        """Wait for every choice; if the client hangs up meanwhile, cancel (the rows are freed at once)."""

        async def watch() -> None:
            # Wait for the server's http.disconnect. Polling `request.is_disconnected()` never sees it here:
            # behind the @app.middleware("http") wrapper its zero-timeout receive is always cancelled.
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    gen.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            async for _ in gen.events():
                pass
        finally:
            watcher.cancel()

    def sse(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            try:
                async for c in chunks:
                    yield f"data: {json.dumps(c, ensure_ascii=False)}\n\n".encode()
                yield b"data: [DONE]\n\n"
            except APIError as e:
                yield f"data: {json.dumps(e.body())}\n\n".encode()

        return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    # ------------------------------------------------------------------ playground helpers
    @app.get("/api/tokenizers")
    async def list_tokenizers() -> dict[str, Any]:
        found = await run_in_threadpool(registry.available)
        names = [f"model:{n}" for n in found] + list(BUILTIN) + sorted(vocab_files(vocab_dir))
        return {"tokenizers": names}

    @app.post("/api/tokenize")
    async def tokenize_text(body: TokenizeRequest) -> dict[str, Any]:
        names = body.tokenizers or ["char", "byte", "word"]
        results = []
        for name in names:
            if name in BUILTIN:
                results.append(tokenize(name, None, body.text))
                continue
            if name.startswith("model:"):
                tok = (await load(name[len("model:") :])).tokenizer
            else:
                tok = await run_in_threadpool(pretrained, name, vocab_dir)
                if tok is None:
                    raise bad_param("tokenizers", f"unknown or unavailable tokenizer '{name}'; see GET /api/tokenizers")
            try:
                results.append(await run_in_threadpool(tokenize, name, tok, body.text))
            except ValueError as e:
                raise bad_param("text", f"{name} cannot encode this text: {e}") from None
        return {"results": results}

    @app.post("/api/next_token")
    async def next_token(body: NextTokenRequest) -> dict[str, Any]:
        """The raw next-token distribution (top_n logits and the log-normaliser of all of them): the page
        applies temperature, top-k, top-p and min-p itself, so its bars follow the sliders without a
        round trip."""
        lm = await load(body.model)
        ids = encode(lm, body.prompt) if isinstance(body.prompt, str) else list(body.prompt)
        if not ids:
            ids = list(lm.eos_ids[:1])
            if not ids:
                raise bad_param("prompt", "the prompt is empty")
        check_prompt(lm, ids)

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
            "tokens": [
                {"id": i, "token": fmt.token_text(lm, i), "logit": v} for i, v in zip(top_ids, values, strict=True)
            ],
        }

    # ------------------------------------------------------------------ the page
    static = resources.files("kiln.serve") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(static / "index.html"))

    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    return app


def _has_chat_tokens(path: Path) -> bool:
    """Whether a model not yet loaded can chat, from its tokenizer file alone (no weights read)."""
    try:
        meta = json.loads((resolve_checkpoint(path) / "tokenizer" / "kiln-tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, CheckpointError):
        return False
    specials = meta.get("special_tokens") or {}
    return isinstance(specials, dict) and all(t in specials for t in CHAT_TOKENS)
