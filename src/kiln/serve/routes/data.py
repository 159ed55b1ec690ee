"""The Data tab's routes: `kiln clean` outputs under `data_dir` (ServeConfig) — the funnel (stats.json), dropped
samples per step and reason, kept documents (paged, searched), one document whole, and its WARC record.

Outputs are looked up by name among those a walk of data_dir found (kiln.serve.found), shards by file name among
the output's own, so nothing outside data_dir is read — except the WARC a document came from, which is opened only
when it is one of the inputs the clean run lists in its stats.json (see kiln.serve.warc_source).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from kiln.serve import clean_outputs as co
from kiln.serve.errors import APIError
from kiln.serve.found import pick
from kiln.serve.state import Server
from kiln.serve.warc_source import candidate_warcs, find_record

router = APIRouter(prefix="/api/data")

MAX_PAGE = 100
HINT = (
    "No data directory is configured. Start the server with data_dir pointing at a kiln clean output, or a folder "
    "holding several: kiln serve --models runs data_dir=runs/clean"
)

OutputName = Annotated[str, Query(min_length=1, max_length=1000, description="a clean output's path under data_dir")]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]


def _output(server: Any, name: str) -> Path:
    root = server.config.data_dir
    if root is None:
        raise APIError(404, HINT, param="output", code="no_data_dir")
    return pick(co.find_outputs(root), name, "clean output", "output")


async def _read(fn: Any, *args: Any) -> Any:
    """`fn(*args)` off the event loop; a broken output file is a 422 naming it, not a 500."""
    try:
        return await run_in_threadpool(fn, *args)
    except co.OutputError as e:
        raise APIError(422, f"this clean output cannot be read: {e}", code="unreadable_output") from None


@router.get("/outputs")
async def outputs(server: Server) -> dict[str, Any]:
    """The clean outputs under data_dir, each with its documents in and out; `hint` when data_dir is not set."""
    root = server.config.data_dir
    if root is None:
        return {"data_dir": None, "outputs": [], "hint": HINT}

    def work() -> list[dict[str, Any]]:
        found = []
        for name, path in co.find_outputs(root).items():
            try:
                stats = co.read_stats(path)
            except co.OutputError:
                continue
            steps = stats.get("steps") or [{}]
            first_in = steps[0].get("in") if isinstance(steps[0], dict) else None
            found.append({"name": name, "documents_in": first_in, "documents_out": stats.get("documents_out")})
        return found

    items = await run_in_threadpool(work)
    hint = None if items else f"No kiln clean output (a folder with stats.json) under {root.name}/."
    return {"data_dir": root.name, "outputs": items, "hint": hint}


@router.get("/stats")
async def stats(server: Server, output: OutputName) -> dict[str, Any]:
    """The output's stats.json: per step, documents in, kept, dropped by reason."""
    return {"output": output, "stats": await _read(lambda: co.read_stats(_output(server, output)))}


@router.get("/dropped")
async def dropped(
    server: Server,
    output: OutputName,
    step: Annotated[str | None, Query(max_length=200)] = None,
    reason: Annotated[str | None, Query(max_length=200)] = None,
    offset: Offset = 0,
    limit: Limit = 20,
) -> dict[str, Any]:
    """A page of the dropped documents clean kept as samples, for one step and reason (or all)."""
    page = await _read(lambda: co.dropped(_output(server, output), step, reason, offset, limit))
    return {"output": output, "step": step, "reason": reason, **page}


@router.get("/documents")
async def documents(
    server: Server,
    output: OutputName,
    q: Annotated[str, Query(max_length=200)] = "",
    offset: Offset = 0,
    limit: Limit = 20,
) -> dict[str, Any]:
    """A page of the kept documents whose text or URL contains `q` (case-insensitive), with their metadata."""
    page = await _read(lambda: co.search(_output(server, output), q, offset, limit))
    return {"output": output, "q": q, **page}


@router.get("/document")
async def document(
    server: Server,
    output: OutputName,
    shard: Annotated[str, Query(min_length=1, max_length=300)],
    row: Annotated[int, Query(ge=0)],
) -> dict[str, Any]:
    """One kept document whole."""
    doc = await _read(lambda: co.document(_output(server, output), shard, row))
    if doc is None:
        raise APIError(404, f"no document at row {row} of '{shard}'", param="row", code="not_found")
    return {"output": output, **doc}


@router.get("/source")
async def source(
    server: Server,
    output: OutputName,
    shard: Annotated[str, Query(min_length=1, max_length=300)],
    row: Annotated[int, Query(ge=0)],
) -> dict[str, Any]:
    """The WARC record a kept document was extracted from, if its WARC is at hand; `found: false` says why not."""

    def work() -> dict[str, Any]:
        path = _output(server, output)
        doc = co.document(path, shard, row)
        if doc is None:
            raise APIError(404, f"no document at row {row} of '{shard}'", param="row", code="not_found")
        name = doc["metadata"].get("source")
        if not name or not str(name).lower().endswith((".warc", ".warc.gz", ".arc", ".arc.gz")):
            return {"found": False, "why": "this document did not come from a WARC (its source is not one)"}
        warcs = candidate_warcs(path, co.read_stats(path).get("inputs") or [], str(name))
        if not warcs:
            return {"found": False, "why": f"the WARC {name} is not at hand (moved or deleted since kiln clean ran)"}
        record = find_record(warcs, str(doc["id"]))
        if record is None:
            return {"found": False, "why": f"no record with this document's id in {name}"}
        return {"found": True, **record}

    return await _read(work)
