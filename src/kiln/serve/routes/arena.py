"""The playground's arena: `POST /api/arena/battle` (two blind answers), `POST /api/arena/vote` (reveals the
models, records the vote), `GET /api/arena/leaderboard` (Bradley-Terry ratings) and `GET /api/arena/export`
(the votes as DPO JSONL for `kiln dpo`). See kiln.serve.arena.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from kiln.serve.arena.battle import run_battle, start_battle, stream_battle
from kiln.serve.arena.export import dpo_lines, games
from kiln.serve.arena.ratings import DEFAULT_PRIOR, DEFAULT_ROUNDS, leaderboard
from kiln.serve.arena.requests import BattleRequest, VoteRequest
from kiln.serve.arena.store import ArenaStore, VoteError
from kiln.serve.config import ServeConfig
from kiln.serve.errors import APIError, bad_param
from kiln.serve.respond import sse
from kiln.serve.state import Server

log = logging.getLogger("kiln.serve")

router = APIRouter()
MODES = ("completion", "chat")


def arena_directory(config: ServeConfig) -> Path:
    """Where the votes are kept: `arena_dir`, or `arena/` inside the models directory (beside the models they
    rate, where a user looks for them; it holds no checkpoint, so it is never offered as a model)."""
    return config.arena_dir if config.arena_dir is not None else Path(config.models) / "arena"


def votes_unavailable(arena: ArenaStore, e: OSError, action: str) -> APIError:
    """503 for a votes file the server cannot read or write: the path and the OS's reason go to the server's log,
    not to the client."""
    log.error("cannot %s the arena's votes %s: %s", action, arena.path, e)
    return APIError(
        503, f"the server cannot {action} its votes file (see its log; --arena-dir must be a writable directory)",
        code="votes_not_writable" if action == "write" else "votes_unreadable",
    )  # fmt: skip


async def _arena(request: Request) -> ArenaStore:
    return request.app.state.arena


Arena = Annotated[ArenaStore, Depends(_arena)]


@router.post("/api/arena/battle", response_model=None)
async def battle(body: BattleRequest, request: Request, server: Server, arena: Arena) -> Any:
    """Two models answer `prompt` blind: the answer shows sides "a" and "b" only; the vote reveals the models.
    With `stream: true`, server-sent events (each side's tokens as they come, then the battle id)."""
    if body.stream:
        return sse(stream_battle(body, *await start_battle(server, body), arena.add))
    b = await run_battle(server, body, request)
    arena.add(b)
    return {"battle_id": b.id, "mode": b.mode, "prompt": b.prompt, "answers": {"a": b.answer_a, "b": b.answer_b}}


@router.post("/api/arena/vote")
async def vote(body: VoteRequest, arena: Arena) -> dict[str, Any]:
    try:
        record = await run_in_threadpool(arena.vote, body.battle_id, body.winner)
    except VoteError as e:
        raise APIError(400, str(e), param="battle_id", code=e.reason) from None
    except OSError as e:
        raise votes_unavailable(arena, e, "write") from None
    return {
        "battle_id": record["id"],
        "winner": record["winner"],
        "models": {"a": record["model_a"], "b": record["model_b"]},
    }


@router.get("/api/arena/leaderboard")
async def get_leaderboard(server: Server, arena: Arena) -> dict[str, Any]:
    """Every voted model's Bradley-Terry rating (400 log10 scale, 1000 = the anchor) with a seeded 95%
    bootstrap interval, its votes and win rate; and how many DPO pairs the votes make."""

    def compute() -> dict[str, Any]:
        votes = arena.votes()
        rows = leaderboard(games(votes), prior=DEFAULT_PRIOR, rounds=DEFAULT_ROUNDS, seed=0)
        return {
            "models": [dataclasses.asdict(r) for r in rows],
            "votes": len(votes),
            "pairs": sum(1 for _ in dpo_lines(votes)),
            "prior": DEFAULT_PRIOR,
            "bootstrap_rounds": DEFAULT_ROUNDS,
        }

    try:
        return await server.cpu(compute)
    except OSError as e:
        raise votes_unavailable(arena, e, "read") from None


@router.get("/api/arena/export", response_model=None)
async def export(server: Server, arena: Arena, mode: str | None = None) -> Response:
    """The votes as DPO JSONL (prompt, chosen, rejected), a download; `?mode=chat` or `?mode=completion` keeps
    one kind of battle."""
    if mode is not None and mode not in MODES:
        raise bad_param("mode", f"mode must be completion or chat, got {mode!r}")
    try:
        text = await server.cpu(lambda: "".join(dpo_lines(arena.votes(), mode)))
    except OSError as e:
        raise votes_unavailable(arena, e, "read") from None
    return Response(
        text.encode("utf-8"),
        media_type="application/jsonl; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="arena-dpo.jsonl"'},
    )
