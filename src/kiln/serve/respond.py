"""The one generation path of the OpenAI routes: prompts in token ids -> checked sampling settings -> choices
submitted to the model's batcher -> a stream of chunks or one collected body, in the request's `Shape`.

Completions and chat differ only before (how the prompt is built) and in the shape; a fix here fixes both.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from kiln.serve import openai_format as fmt
from kiln.serve.access_log import note
from kiln.serve.errors import APIError
from kiln.serve.generation import Generation
from kiln.serve.metrics import Metrics
from kiln.serve.models import LoadedModel
from kiln.serve.protocol import SamplingFields
from kiln.serve.shapes import Shape
from kiln.serve.validate import check_choices


async def respond(
    lm: LoadedModel,
    body: SamplingFields,
    prompts: list[list[int]],
    shape: Shape,
    request: Request,
    metrics: Metrics,
) -> Any:
    """Generate `n` choices for each of `prompts` (checked ids) and answer in `shape`, streamed if asked."""
    n = check_choices(body, len(prompts))
    params = shape.sampling(prompts)
    rows = [p for p in prompts for _ in range(n)]
    gen = Generation(lm, rows, [params] * len(rows), body.seed, metrics, n=n)
    note(request, model=lm.name, usage=gen)  # the access log reads its token counts once the answer is sent
    gen.submit()
    rid = fmt.new_id(shape.id_prefix)
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse(chunks(lm, gen, rid, shape, body.return_token_ids, include_usage))
    await collect(gen, request)
    return shape.body(rid, gen)


async def chunks(
    lm: LoadedModel, gen: Generation, rid: str, shape: Shape, with_ids: bool, include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    """The stream's chunks: the shape's opening ones, one per token event, then usage if asked for."""
    for choice in shape.opening(gen):
        yield fmt.chunk(rid, shape.chunk_object, lm.name, [choice])
    sent_prompt: set[int] = set()
    async for ev in gen.events():
        if ev.finish_reason == "cancelled":
            continue
        choice = shape.event_choice(ev)
        if with_ids:
            choice["token_ids"] = [ev.token_id]
            if ev.index not in sent_prompt:  # once per choice, as vLLM does
                sent_prompt.add(ev.index)
                choice["prompt_token_ids"] = gen.requests[ev.index].prompt
        yield fmt.chunk(rid, shape.chunk_object, lm.name, [choice])
    if include_usage:
        yield fmt.chunk(rid, shape.chunk_object, lm.name, [], gen.usage())


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
    """Server-sent events, OpenAI's way: `data: {json}` per chunk, then `data: [DONE]`; an error mid-stream
    is sent as one last `data: {"error": ...}` (the status line has long gone out)."""

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for c in chunks:
                yield f"data: {json.dumps(c, ensure_ascii=False)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        except APIError as e:
            yield f"data: {json.dumps(e.body())}\n\n".encode()

    return StreamingResponse(lines(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
