"""The dashboard at /ui (static HTML, CSS and JS, nothing fetched from elsewhere) and the IDL's docs at /idl."""

from __future__ import annotations

import html
import re
from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from app.deps import SettingsDep

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
#: `make docs` writes the IDL's HTML here (thrift --gen html); it is committed.
IDL_DIR = STATIC_DIR / "idl"
IDL_PAGE = "rpcinterface.html"
# Only plain names of the kinds these folders hold: no path, no dot files, nothing else of the tree.
_FILE_NAME = re.compile(r"[A-Za-z0-9_-]+\.(html|css|js|svg)")

# The page loads only what this gateway serves: a stray third-party URL would be blocked, not fetched.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


@cache
def _page_template() -> str:
    return (STATIC_DIR / "index.html").read_text(encoding="utf-8")


@router.get("/ui", response_class=HTMLResponse)
async def dashboard(settings: SettingsDep) -> HTMLResponse:
    """The live dashboard: host, a form to start a calculation, the tasks as they run."""
    try:
        template = _page_template()
    except FileNotFoundError:
        raise HTTPException(404, "the dashboard's files (app/static/) are not installed") from None
    page = template.replace("{{MAX_DECIMAL}}", html.escape(str(settings.MAX_DECIMAL)))
    return HTMLResponse(page, headers=_PAGE_HEADERS)


@router.get("/ui/")
async def dashboard_slash() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=308)


@router.get("/ui/static/{name}")
async def dashboard_file(name: str) -> FileResponse:
    """The dashboard's CSS and JS."""
    return _file(STATIC_DIR, name, "no such file of the dashboard")


@router.get("/idl")
@router.get("/idl/")
async def idl_index() -> RedirectResponse:
    """The contract's documentation, generated from rpcinterface.thrift by `make docs`."""
    return RedirectResponse(f"/idl/{IDL_PAGE}", status_code=307)


@router.get("/idl/{name}")
async def idl_file(name: str) -> FileResponse:
    return _file(IDL_DIR, name, "no such page of the IDL's documentation (`make docs` generates app/static/idl/)")


def _file(folder: Path, name: str, missing: str) -> FileResponse:
    # A missing folder (an installation without these files) is a 404 like a missing file, never a 500.
    path = folder / name
    if not _FILE_NAME.fullmatch(name) or not path.is_file():
        raise HTTPException(404, missing)
    # no-cache: the browser revalidates, so a new gateway's files are used at once.
    return FileResponse(path, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
