"""One arena battle: pick two models (or take the two asked for), put them on sides A and B at random, and
generate both answers through the same path as /v1/completions and /v1/chat/completions (their request
models, prompt checks, sampling settings and `Generation` on each model's batcher), both at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from kiln.generate.sampling import SamplingParams
from kiln.serve.arena.requests import BattleRequest
from kiln.serve.arena.store import Battle, new_battle_id
from kiln.serve.chat import render_chat
from kiln.serve.errors import APIError, bad_param
from kiln.serve.generation import Generation
from kiln.serve.models import LoadedModel
from kiln.serve.protocol import ChatRequest, CompletionRequest
from kiln.serve.shapes import ChatShape, CompletionShape
from kiln.serve.state import ServerState, has_chat_tokens
from kiln.serve.validate import check_prompt, completion_prompts

# Sides and random pairs come from the OS's randomness: the page must not be able to predict which model is A.
_rng = random.SystemRandom()


async def pick_sides(server: ServerState, body: BattleRequest) -> tuple[str, str]:
    """(model on side A, model on side B): the two asked for, or two drawn among those served (in chat mode,
    among those that can chat), in random order."""
    found = await server.available()
    if body.models is not None:
        pair = list(body.models)
        if pair[0] == pair[1]:
            raise bad_param("models", "pick two different models (or none, for a random pair)")
        for name in pair:
            if name not in found:
                raise APIError(404, f"the model '{name}' does not exist", param="models", code="model_not_found")
    else:
        # has_chat_tokens reads each model's tokenizer file (cached): off the event loop
        names = await run_in_threadpool(
            lambda: [n for n, path in found.items() if body.mode == "completion" or has_chat_tokens(path)]
        )
        if len(names) < 2:
            kind = "models that can chat" if body.mode == "chat" else "models"
            raise bad_param("models", f"a battle needs two {kind}; the server offers {len(names)}")
        pair = _rng.sample(names, 2)
    _rng.shuffle(pair)
    return pair[0], pair[1]


async def prepare(server: ServerState, name: str, body: BattleRequest) -> tuple[LoadedModel, list[int], SamplingParams]:
    """The model, prompt ids and sampling settings of one side, built as the OpenAI routes build them."""
    lm = await server.load(name)
    sampling: dict[str, Any] = {"model": name, **body.settings()}
    if body.mode == "chat":
        if not lm.has_chat_template:
            raise bad_param("mode", f"the model '{name}' has no chat template (a base model): use completion mode")
        messages = [{"role": "system", "content": body.system}] if body.system else []
        req = ChatRequest.model_validate(
            {**sampling, "messages": [*messages, {"role": "user", "content": body.prompt}]}
        )
        prompt = check_prompt(lm, await server.cpu(render_chat, lm, req.messages))
        shape: ChatShape | CompletionShape = ChatShape(lm, req)
    else:
        creq = CompletionRequest.model_validate({**sampling, "prompt": body.prompt})
        prompts, shown = completion_prompts(lm, creq)
        prompt, shape = prompts[0], CompletionShape(lm, creq, shown)
    return lm, prompt, shape.sampling([prompt])


async def generate_both(gens: list[Generation], request: Request) -> None:
    """Run both generations to the end; if the client hangs up (or one side fails), cancel both."""

    async def drain(gen: Generation) -> None:
        async for _ in gen.events():
            pass

    async def watch() -> None:
        while True:  # the server's http.disconnect, as respond.collect waits for it
            if (await request.receive())["type"] == "http.disconnect":
                for g in gens:
                    g.cancel()
                return

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(*(drain(g) for g in gens))
    except BaseException:
        for g in gens:
            g.cancel()
        raise
    finally:
        watcher.cancel()


async def start_battle(server: ServerState, body: BattleRequest) -> tuple[str, str, list[Generation]]:
    """(model A, model B, their two generations, submitted to the models' batchers)."""
    model_a, model_b = await pick_sides(server, body)
    sides = [await prepare(server, name, body) for name in (model_a, model_b)]
    gens = [Generation(lm, [prompt], [params], body.seed, server.metrics) for lm, prompt, params in sides]
    submitted: list[Generation] = []
    try:
        for g in gens:
            g.submit()
            submitted.append(g)
    except APIError:
        for g in submitted:
            g.cancel()
        raise
    return model_a, model_b, gens


def finished_battle(body: BattleRequest, model_a: str, model_b: str, gens: list[Generation]) -> Battle:
    a, b = (g.choices[0] for g in gens)
    return Battle(
        new_battle_id(), body.mode, body.prompt, body.system if body.mode == "chat" else None,
        model_a, model_b, a.text, b.text, body.settings(),
    )  # fmt: skip


async def run_battle(server: ServerState, body: BattleRequest, request: Request) -> Battle:
    """Both answers to `body.prompt`, as a Battle waiting for its vote."""
    model_a, model_b, gens = await start_battle(server, body)
    await generate_both(gens, request)
    return finished_battle(body, model_a, model_b, gens)


async def stream_battle(
    body: BattleRequest, model_a: str, model_b: str, gens: list[Generation], add: Callable[[Battle], None]
) -> AsyncIterator[dict]:
    """A started battle (`start_battle`'s, so a bad request is still a plain 400) as events: `{"side": "a"|"b",
    "text", "finish_reason"}` per token as either side produces it, then `{"battle_id", "answers"}` once both are
    done (the battle is `add`ed then: a battle whose stream the client abandoned cannot be voted on). Stopping
    the iteration cancels both generations."""
    queue: asyncio.Queue[dict | APIError | None] = asyncio.Queue()

    async def pump(side: str, gen: Generation) -> None:
        try:
            async for ev in gen.events():
                if ev.finish_reason != "cancelled":
                    queue.put_nowait({"side": side, "text": ev.text, "finish_reason": ev.finish_reason})
        except APIError as e:
            queue.put_nowait(e)
        finally:
            queue.put_nowait(None)

    tasks = [asyncio.create_task(pump(side, g)) for side, g in zip("ab", gens, strict=True)]
    try:
        done = 0
        while done < len(tasks):
            item = await queue.get()
            if item is None:
                done += 1
            elif isinstance(item, APIError):
                raise item
            else:
                yield item
        battle = finished_battle(body, model_a, model_b, gens)
        add(battle)
        yield {"battle_id": battle.id, "mode": battle.mode, "answers": {"a": battle.answer_a, "b": battle.answer_b}}
    finally:
        for g in gens:
            g.cancel()
        for t in tasks:
            t.cancel()
