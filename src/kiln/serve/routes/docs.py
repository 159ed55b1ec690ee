"""`/docs` (Swagger UI) that works offline: its JavaScript and CSS come from this server.

FastAPI's default page loads Swagger UI from a CDN, so on a machine without internet (or behind a firewall)
/docs is blank. The `fastapi-offline` package ships the same assets; this router serves them under
/docs-assets and points FastAPI's own page builder at them. (ReDoc is not offered: its page fetches its
logo from its vendor's CDN whatever the options.)
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS = resources.files("fastapi_offline") / "static"

router = APIRouter()


def asset_files() -> StaticFiles:
    """The app mounts this at ASSETS_URL."""
    return StaticFiles(directory=str(ASSETS))


def _root(request: Request) -> str:
    # behind a path prefix (uvicorn --root-path) the assets are under it too
    return request.scope.get("root_path", "").rstrip("/")


@router.get("/docs", include_in_schema=False)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title="kiln API",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
    )
