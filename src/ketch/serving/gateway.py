"""The ingress gateway on ketch's port: ``/serving/{namespace}/{name}/...`` and ``Host: {name}.{namespace}.<domain>``.

A request goes to the InferenceService's entry component (the transformer when there is one, else the
predictor; ``:explain`` to the explainer), to a revision chosen by the traffic split, to one of that
revision's ready replicas. ``{name}-predictor`` (and ``-transformer``, ``-explainer``) address one component
directly, as KServe's per-component hosts do; a transformer reaches its predictor that way. A revision at
zero replicas holds the request until a replica is ready (scale from zero), up to the component's timeout.
Bodies are streamed both ways through a keep-alive httpx pool.
"""

from __future__ import annotations

import logging
import os

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from ketch.serving.router import Router

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per proxied request would flood ketch's log
DOMAIN = os.environ.get("KETCH_SERVING_DOMAIN", "localhost")
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding", "upgrade", "host", "content-length"}
SUFFIXES = ("predictor", "transformer", "explainer")


class Gateway:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0), limits=httpx.Limits(max_connections=512, max_keepalive_connections=128))

    def resolve(self, ns: str, name: str, rest: str) -> tuple[str, str] | None:
        """(isvc name, component) for a URL name, or None."""
        route = self.router.routes.get((ns, name))
        if route is not None:
            if rest.endswith(":explain") and "explainer" in route.components:
                return name, "explainer"
            return name, route.entry
        base, _, comp = name.rpartition("-")
        if comp in SUFFIXES and (ns, base) in self.router.routes and comp in self.router.routes[(ns, base)].components:
            return base, comp
        return None

    async def proxy(self, request: Request, ns: str, name: str, rest: str) -> Response:
        found = self.resolve(ns, name, rest)
        if found is None:
            return JSONResponse({"error": f"InferenceService {ns}/{name} not found"}, 404)
        isvc, comp = found
        route = self.router.routes[(ns, isvc)]
        rev, ep = await self.router.wait_endpoint(ns, isvc, comp, route.timeout)
        if ep is None:
            return JSONResponse({"error": f"no ready replica of {ns}/{isvc} {comp} within {route.timeout:.0f}s"}, 503)
        stats = self.router.stat(ns, isvc, comp, rev)
        headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in HOP]
        body = await request.body()
        url = f"http://{ep}/{rest}"
        if request.url.query:
            url += "?" + request.url.query
        stats.start()
        try:
            for attempt in (0, 1):
                try:
                    req = self.client.build_request(request.method, url, headers=headers, content=body)
                    upstream = await self.client.send(req, stream=True)
                    break
                except httpx.ConnectError:
                    if attempt:
                        raise
                    rev, ep = self.router.pick(ns, isvc, comp)  # that replica went away: try another once
                    if ep is None:
                        raise
                    url = f"http://{ep}/{rest}" + ("?" + request.url.query if request.url.query else "")
        except httpx.HTTPError as e:
            stats.end()
            return JSONResponse({"error": f"upstream {ep}: {type(e).__name__}: {e}"}, 502)
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP}
        out_headers["x-ketch-revision"] = rev

        async def stream():  # noqa: ANN202
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()
                stats.end()

        return StreamingResponse(stream(), status_code=upstream.status_code, headers=out_headers)

    def routes(self) -> list[BaseRoute]:
        async def by_path(request: Request) -> Response:
            p = request.path_params
            return await self.proxy(request, p["namespace"], p["name"], p.get("rest", ""))

        methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        return [
            HostRoute(self),
            Route("/serving/{namespace}/{name}", by_path, methods=methods),
            Route("/serving/{namespace}/{name}/{rest:path}", by_path, methods=methods),
        ]

    async def close(self) -> None:
        await self.client.aclose()


class HostRoute(BaseRoute):
    """Matches ``Host: {name}.{namespace}.<domain>[:port]`` on any path (virtual-host routing)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.suffix = "." + DOMAIN

    def _parse(self, scope: Scope) -> tuple[str, str] | None:
        if scope["type"] != "http":
            return None
        host = ""
        for k, v in scope.get("headers", []):
            if k == b"host":
                host = v.decode("latin-1").rsplit(":", 1)[0] if not v.startswith(b"[") else ""
                break
        if not host.endswith(self.suffix):
            return None
        parts = host[: -len(self.suffix)].split(".")
        if len(parts) != 2:
            return None
        return parts[0], parts[1]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        p = self._parse(scope)
        if p is None:
            return Match.NONE, {}
        return Match.FULL, {"ketch_host": p}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        name, ns = scope["ketch_host"]
        request = Request(scope, receive)
        resp = await self.gateway.proxy(request, ns, name, scope["path"].lstrip("/"))
        await resp(scope, receive, send)
