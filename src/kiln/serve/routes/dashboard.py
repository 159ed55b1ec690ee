"""The Dashboard tab's routes: training runs under the models directory (their metrics, read from a byte offset so
a poll carries only new lines, and their config), eval results as a leaderboard, and scaling sweeps with their plots.

Every name in a URL is looked up among what a walk of the models directory found (kiln.serve.found), so nothing
outside it can be read. File work runs in a thread pool, off the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from kiln.serve.errors import APIError
from kiln.serve.found import pick
from kiln.serve.leaderboard import leaderboard
from kiln.serve.runs import find_runs, read_config, read_metrics, run_info
from kiln.serve.state import Server
from kiln.serve.sweeps import PLOT_FILES, find_sweeps, read_sweep

router = APIRouter(prefix="/api/dashboard")

RunName = Annotated[str, Query(min_length=1, max_length=1000, description="a run's path under the models directory")]


@router.get("/runs")
async def list_runs(server: Server) -> dict[str, Any]:
    """Every run (a folder with metrics.jsonl) under the models directory, most recently changed first."""

    def work() -> list[dict[str, Any]]:
        runs = [run_info(name, path) for name, path in find_runs(server.config.models).items()]
        return sorted(runs, key=lambda r: (-(r["modified"] or 0), r["name"]))

    return {"runs": await run_in_threadpool(work)}


@router.get("/metrics")
async def metrics(server: Server, run: RunName, offset: Annotated[int, Query(ge=0, le=1 << 50)] = 0) -> dict[str, Any]:
    """The run's metrics.jsonl records from byte `offset`; poll again with `next_offset` for the lines added since."""

    def work() -> dict[str, Any]:
        chunk = read_metrics(pick(find_runs(server.config.models), run, "run", "run"), offset)
        return {"run": run, **vars(chunk)}

    return await run_in_threadpool(work)


@router.get("/config")
async def config(server: Server, run: RunName) -> dict[str, Any]:
    """The run's resolved config file (kiln-<stage>.toml) as text."""
    path = pick(await run_in_threadpool(find_runs, server.config.models), run, "run", "run")
    return {"run": run, **await run_in_threadpool(read_config, path)}


@router.get("/leaderboard")
async def eval_leaderboard(server: Server) -> dict[str, Any]:
    """Every kiln eval results.json under the models directory: checkpoints x tasks."""
    return await run_in_threadpool(leaderboard, server.config.models)


@router.get("/sweeps")
async def sweeps(server: Server) -> dict[str, Any]:
    """Every kiln sweep (fit.json) under the models directory, with its runs, fits and plot files."""

    def work() -> list[dict[str, Any]]:
        return [read_sweep(name, path) for name, path in find_sweeps(server.config.models).items()]

    return {"sweeps": await run_in_threadpool(work)}


@router.get("/sweep_plot")
async def sweep_plot(
    server: Server,
    sweep: RunName,
    file: Annotated[str, Query(description="sweep.svg or sweep.png")] = "sweep.svg",
) -> Response:
    """A sweep's figure. Only the two files kiln sweep writes are served; an SVG is sent with a policy that keeps
    any script in it from running, should someone open it directly."""
    if file not in PLOT_FILES:
        raise APIError(400, f"file must be one of {', '.join(PLOT_FILES)}", param="file", code="invalid_value")
    path = pick(await run_in_threadpool(find_sweeps, server.config.models), sweep, "sweep", "sweep") / file
    try:
        data = await run_in_threadpool(path.read_bytes)
    except OSError:
        raise APIError(404, f"the sweep '{sweep}' has no {file}", param="file", code="not_found") from None
    headers = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'", "Cache-Control": "no-cache"}
    return Response(data, media_type=PLOT_FILES[file], headers=headers)
