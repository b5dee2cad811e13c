"""The content of a pipeline artifact, for the run page's HTML/Markdown views and dataset previews.

KFP's UI reads artifact files from the pipeline root itself; so does this. Only an artifact recorded in a
PipelineRun's status (looked up through the API by run and artifact id) can be read — never a path or URI
given by the browser — and at most ``LIMIT`` bytes of it. The answer is plain text under a CSP that forbids
everything, so even opened directly it cannot run; the app shows HTML only in a sandboxed iframe.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ketch import storage
from ketch.config import Settings
from ketch.machinery.api import Api

LIMIT = 1 << 20
RUN_KIND = ("pipelines.kubeflow.org/v1", "PipelineRun")
HEADERS = {"Content-Security-Policy": "default-src 'none'; sandbox", "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def find_artifact(run: dict, artifact_id: str) -> dict | None:
    for task in ((run.get("status") or {}).get("tasks") or {}).values():
        for arts in ((task.get("outputs") or {}).get("artifacts") or {}).values():
            for a in arts or []:
                if a.get("id") == artifact_id:
                    return a
    return None


def allowed_roots(settings: Settings) -> list[str]:
    """Where artifacts may be read from: the artifact root, and each object store prefix named in
    ``KETCH_ARTIFACT_STORES`` (comma-separated URIs)."""
    extra = [x.strip() for x in os.environ.get("KETCH_ARTIFACT_STORES", "").split(",") if x.strip()]
    return [settings.artifact_root, *extra]


def readable(uri: str, roots: list[str]) -> bool:
    """True when ``uri`` lies under one of ``roots`` — whatever the object's status claims (a patched
    status naming file:///etc/shadow, a ``..`` or a symlink out of the root is refused)."""
    try:
        fs, path = storage.filesystem(uri)
    except (ValueError, ImportError):
        return False
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    for root in roots:
        try:
            rfs, rpath = storage.filesystem(root)
        except (ValueError, ImportError):
            continue
        rlocal = "file" in (rfs.protocol if isinstance(rfs.protocol, tuple) else (rfs.protocol,))
        if local and rlocal:
            real, rreal = os.path.realpath(path), os.path.realpath(rpath)
            if real == rreal or real.startswith(rreal.rstrip("/") + "/"):
                return True
        elif not local and not rlocal and type(fs) is type(rfs):
            p, r = posixpath.normpath(path), posixpath.normpath(rpath).rstrip("/")
            if ".." not in path.split("/") and (p == r or p.startswith(r + "/")):
                return True
    return False


def read_head(uri: str, limit: int = LIMIT) -> tuple[bytes, bool]:
    """The first ``limit`` bytes of the artifact (of its first file, if it is a directory), and whether it
    was cut."""
    fs, path = storage.filesystem(uri, listings_cache=False)
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if fs.isfile(p))
        if not files:
            return b"", False
        path = files[0]
    with fs.open(path, "rb") as f:
        data = f.read(limit + 1)
    return data[:limit], len(data) > limit


def content_handler(api: Api, settings: Settings):
    async def handler(request: Request) -> Response:
        run_id, aid = request.path_params["run"], request.path_params["aid"]
        try:
            rd = api.rd(*RUN_KIND)
        except Exception:
            return JSONResponse({"error": "the pipelines component is not running"}, 404, headers=HEADERS)
        runs: list[dict[str, Any]] = api.list(rd, None, None, None, f"metadata.name={run_id}")["items"]
        art = find_artifact(runs[0], aid) if runs else None
        if art is None or not art.get("uri"):
            return JSONResponse({"error": f"run {run_id!r} has no artifact {aid!r}"}, 404, headers=HEADERS)
        if not readable(art["uri"], allowed_roots(settings)):
            return JSONResponse({"error": f"artifact {aid!r} is outside the artifact root and the configured object stores"}, 403, headers=HEADERS)
        try:
            data, cut = await run_in_threadpool(read_head, art["uri"])
        except (OSError, ValueError) as e:
            return JSONResponse({"error": f"cannot read artifact {aid!r}: {e}"}, 404, headers=HEADERS)
        return Response(data, media_type="text/plain; charset=utf-8", headers={**HEADERS, "X-Ketch-Truncated": "true" if cut else "false"})

    return handler
