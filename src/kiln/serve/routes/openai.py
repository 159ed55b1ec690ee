"""OpenAI's API: `/v1/models`, `/v1/models/{id}`, `/v1/completions`, `/v1/chat/completions`.

The two generation routes only turn their request into prompt token ids and pick a response shape; the rest
is `respond.respond`, the path they share.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from kiln.serve.access_log import note
from kiln.serve.chat import render_chat
from kiln.serve.errors import APIError
from kiln.serve.protocol import ChatRequest, CompletionRequest
from kiln.serve.respond import respond
from kiln.serve.shapes import ChatShape, CompletionShape
from kiln.serve.state import Server
from kiln.serve.validate import check_completion_options, check_prompt, completion_prompts, require_chat_template

router = APIRouter()


@router.get("/v1/models")
async def list_models(server: Server) -> dict[str, Any]:
    found = await server.available()
    return {"object": "list", "data": [server.model_card(n, p) for n, p in found.items()]}


@router.get("/v1/models/{name:path}")
async def get_model(name: str, server: Server) -> dict[str, Any]:
    found = await server.available()
    if name not in found:
        raise APIError(404, f"the model '{name}' does not exist", param="model", code="model_not_found")
    return server.model_card(name, found[name])


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request, server: Server) -> Any:
    note(request, model=body.model)
    check_completion_options(body)
    lm = await server.load(body.model)
    prompts, shown = completion_prompts(lm, body)
    return await respond(lm, body, prompts, CompletionShape(lm, body, shown), request, server.metrics)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request, server: Server) -> Any:
    note(request, model=body.model)
    lm = await server.load(body.model)
    require_chat_template(lm)
    prompt = check_prompt(lm, render_chat(lm, body.messages), "messages")
    return await respond(lm, body, [prompt], ChatShape(lm, body), request, server.metrics)
