"""The dashboard: one single-page app served at ``/`` on ketch's own port.

Every asset ships inside the package (``ui/static``): plain ES modules, no build step and nothing from a
CDN, so a plain ``pip install`` gives the whole UI offline. The app talks only to the APIs ketch already
serves (Kubernetes REST with discovery, Tables and watches; KFP's ``/apis/v2beta1``; the serving gateway),
so this module serves files, plus the first megabyte of a pipeline artifact's content (artifacts.py).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from ketch.machinery.context import Context

STATIC = Path(__file__).parent / "static"

# Nothing leaves the host: every fetch, script, style and image comes from this origin. HTML artifacts are
# shown in sandboxed srcdoc iframes, which inherit this policy (inline styles allowed, scripts never).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=HEADERS)


async def asset(request: Request) -> Response:
    rel = request.path_params["path"]
    p = (STATIC / rel).resolve()
    if not p.is_relative_to(STATIC.resolve()) or not p.is_file():
        return PlainTextResponse("not found", 404, headers=HEADERS)
    return FileResponse(p, media_type=TYPES.get(p.suffix, "application/octet-stream"), headers=HEADERS)


def setup(ctx: Context) -> None:
    # ``/`` and ``/ui/...`` only: /api, /apis (KFP's /apis/v2beta1 included), /openapi, /version, /healthz
    # and the serving gateway's /serving/ stay with their owners.
    from ketch.ui import kfam, workgroup
    from ketch.ui.artifacts import content_handler

    ctx.add_routes(kfam.routes(ctx) + workgroup.routes(ctx))
    ctx.add_routes([
        Route("/", index),
        Route("/ui/artifacts/{run}/{aid}", content_handler(ctx.api, ctx.settings)),
        Route("/ui/{path:path}", asset),
    ])
