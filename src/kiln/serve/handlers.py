"""Every error the app can raise, answered in OpenAI's error shape (errors.py): our own APIError, pydantic's
validation errors (400 naming the field), Starlette's 404/405, and any bug (500, traceback to the log)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kiln.serve.errors import APIError, error_body

log = logging.getLogger("kiln.serve")


def api_error_response(e: APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


def param_name(loc: tuple[Any, ...]) -> str:
    """The dotted field path of a pydantic error location, as OpenAI's `param` names it."""
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


async def _api_error(_: Request, e: APIError) -> JSONResponse:
    return api_error_response(e)


async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
    errors = e.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = param_name(tuple(first.get("loc", ())))
    msg = f"{param}: {first.get('msg', 'invalid value')}"
    if first.get("type") == "json_invalid":
        param, msg = "body", f"the body is not valid JSON ({first.get('msg')})"
    return JSONResponse(error_body(400, msg, param=param, code="invalid_value"), status_code=400)


async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(error_body(e.status_code, str(e.detail)), status_code=e.status_code)


async def _bug(_: Request, e: Exception) -> JSONResponse:
    log.exception("unhandled error")
    return JSONResponse(error_body(500, f"internal error: {type(e).__name__}"), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _bug)
