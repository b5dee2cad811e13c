"""Request body limits, enforced before a body is read whole, for every route on ketch's port.

kube-apiserver caps request bodies at 3 MiB; so does ketch, for the Kubernetes API and for every other API
it serves (model registry, Katib metrics, dashboard), with larger caps where payloads are legitimately big:
pipeline uploads, inference requests through the gateway, notebook traffic. A declared ``Content-Length``
over the cap is refused at once, before any byte is read; a chunked body is counted as it streams and
refused as soon as it passes the cap. Either way the client gets 413 with a Kubernetes Status naming the
limit, whatever the handler behind would have answered.

This is plain ASGI middleware, so it sits in front of routing and of any other middleware that reads
bodies.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

MiB = 1024 * 1024
DEFAULT_LIMIT = 3 * MiB  # kube-apiserver's limit on a request body
UPLOAD_LIMIT = int(os.environ.get("KETCH_MAX_UPLOAD_BYTES") or 16 * MiB)  # KFP pipeline packages
BIG_LIMIT = int(os.environ.get("KETCH_MAX_PAYLOAD_BYTES") or 64 * MiB)  # inference and notebook traffic

# Path prefixes whose bodies may be bigger than an API object.
_UPLOAD_PREFIXES = ("/apis/v2beta1/pipelines/upload",)  # a compiled pipeline with its code is a few MiB
_BIG_PREFIXES = (
    "/serving/",  # inference requests through the gateway (tensors, images)
    "/notebook/",  # JupyterLab: notebook saves and file uploads
)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(Exception):
    """Raised into the handler from ``receive`` once its body passed the limit; the middleware answers."""


def _host(scope: Scope) -> str:
    for k, v in scope.get("headers") or []:
        if k == b"host":
            return v.decode("latin-1").rsplit(":", 1)[0]
    return ""


def limit_for(scope: Scope) -> int:
    """The most bytes a request to this path may carry."""
    path: str = scope.get("path", "")
    if path.startswith(_UPLOAD_PREFIXES):
        return UPLOAD_LIMIT
    if path.startswith(_BIG_PREFIXES):
        return BIG_LIMIT
    host = _host(scope)
    # Virtual-host inference routing (``<name>.<namespace>.<domain>``): the gateway's, not an API call.
    if host.count(".") >= 2 and not host.replace(".", "").isdigit():
        return BIG_LIMIT
    return DEFAULT_LIMIT


def _status(limit: int) -> bytes:
    return orjson.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"the request is too large: limit is {limit} bytes",
        "reason": "RequestEntityTooLarge", "code": 413,
    })


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit_for(scope)``, decided without buffering it."""

    def __init__(self, app: ASGIApp, limit: Callable[[Scope], int] = limit_for) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared = None
        for k, v in scope.get("headers") or []:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = None
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        seen = 0
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, over
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body") or b"")
                if seen > limit:
                    over = True
                    raise BodyTooLarge()
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if over:
                return  # whatever the handler answers once its body was cut, the client gets the 413
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = _status(limit)
    await send({
        "type": "http.response.start", "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})
