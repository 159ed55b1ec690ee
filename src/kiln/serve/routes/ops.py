"""What operators poll: `/health` (is it up, how many models are in memory) and `/metrics` (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from kiln.serve.state import Server

router = APIRouter()


@router.get("/health")
async def health(server: Server) -> dict[str, Any]:
    return {"status": "ok", "models_loaded": len(server.registry.loaded)}


@router.get("/metrics")
async def prometheus(server: Server) -> Response:
    return Response(server.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
