"""The ingress gateway on ketch's port: ``/serving/{namespace}/{name}/...`` and ``Host: {name}.{namespace}.<domain>``.

Its routing table is filled by the InferenceService controller, which runs in the leader alone; with
several ketch processes the others forward these requests to the leader (``served_here``, server/forward.py).

A request goes to the InferenceService's entry component (the transformer when there is one, else the
predictor; ``:explain`` to the explainer), to a revision chosen by the traffic split, to one of that
revision's ready replicas. ``{name}-predictor`` (and ``-transformer``, ``-explainer``) address one component
directly, as KServe's per-component hosts do; a transformer reaches its predictor that way. A revision at
zero replicas holds the request until a replica is ready (scale from zero), up to the component's timeout.
Bodies go through a keep-alive connection pool per replica (upstream.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from ketch.serving import metrics
from ketch.serving.router import Route as GatewayRoute
from ketch.serving.router import Router
from ketch.serving.upstream import Pool, UpstreamError

if TYPE_CHECKING:
    from ketch.serving.graphrouter import GraphServer

DOMAIN = os.environ.get("KETCH_SERVING_DOMAIN", "localhost")
SUFFIXES = ("predictor", "transformer", "explainer")
JSON = [(b"content-type", b"application/json")]


class Gateway:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.pool = Pool()
        self.graphs: GraphServer | None = None  # InferenceGraphs at the same URLs (graphrouter.py)
        self._children: dict[tuple, tuple] = {}  # metric label children per (ns, isvc, component, revision, code)

    def resolve(self, ns: str, name: str, rest: str) -> tuple[str, str] | None:
        """(isvc name, component) for a URL name, or None."""
        route = self.router.routes.get((ns, name))
        if route is not None:
            if rest.endswith(":explain") and "explainer" in route.components:
                return name, "explainer"
            return name, _split(route, route.entry)
        base, _, comp = name.rpartition("-")
        if comp in SUFFIXES and (ns, base) in self.router.routes and comp in self.router.routes[(ns, base)].components:
            return base, _split(self.router.routes[(ns, base)], comp)
        return None

    async def forward(self, ns: str, name: str, rest: str, method: str, query: str, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """One request to an InferenceService (or one of its components): (status, headers, body).

        What the HTTP routes call, and what an InferenceGraph's steps call in-process (no second trip
        through ketch's HTTP server and its authentication for a hop inside the gateway)."""
        found = self.resolve(ns, name, rest)
        if found is None:
            return 404, JSON, orjson.dumps({"error": f"InferenceService {ns}/{name} not found"})
        isvc, comp = found
        route = self.router.routes[(ns, isvc)]
        rev, ep = await self.router.wait_endpoint(ns, isvc, comp, route.timeout)
        if ep is None:
            return 503, JSON, orjson.dumps({"error": f"no ready replica of {ns}/{isvc} {comp} within {route.timeout:.0f}s"})
        stats = self.router.stat(ns, isvc, comp, rev)
        target = "/" + rest + ("?" + query if query else "")
        t0 = time.perf_counter()
        status = 502
        stats.start()
        try:
            try:
                status, rheaders, content = await self.pool.request(ep, method, target, headers, body)
            except ConnectionRefusedError:
                rev2, ep2 = self.router.pick(ns, isvc, comp)  # that replica went away: try another once
                if ep2 is None:
                    raise
                rev, ep = rev2, ep2
                status, rheaders, content = await self.pool.request(ep, method, target, headers, body)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, UpstreamError) as e:
            return 502, JSON, orjson.dumps({"error": f"upstream {ep}: {type(e).__name__}: {e}"})
        finally:
            stats.end()
            self._observe(ns, isvc, comp, rev, status, time.perf_counter() - t0)
        return status, [h for h in rheaders if h[0] != b"content-length"] + [(b"x-ketch-revision", rev.encode())], content

    def _observe(self, ns: str, isvc: str, comp: str, rev: str, status: int, dt: float) -> None:
        k = (ns, isvc, comp, rev, status)
        c = self._children.get(k)
        if c is None:
            c = self._children[k] = (metrics.requests.labels(ns, isvc, comp, rev, str(status)), metrics.latency.labels(ns, isvc, comp, rev))
        c[0].inc()
        c[1].observe(dt)

    async def proxy(self, request: Request, ns: str, name: str, rest: str) -> Response:
        if self.resolve(ns, name, rest) is None and self.graphs is not None and (ns, name) in self.router.graphs:
            return await self.graphs.serve(request, ns, name)
        body = await request.body()
        status, headers, content = await self.forward(ns, name, rest, request.method, request.url.query, request.headers.raw, body)
        resp = Response(content, status_code=status)
        resp.raw_headers = [*headers, (b"content-length", str(len(content)).encode())]
        return resp

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
        self.pool.close()


def _split(route: GatewayRoute, comp: str) -> str:
    """The predictor, or one of its ready ``spec.canary[]`` entries by their traffic percent."""
    if comp != "predictor" or not route.canaries:
        return comp
    r = random.uniform(0, 100)
    for key, pct in route.canaries:
        r -= pct
        if r < 0:
            return key
    return comp


def virtual_host(scope: Scope) -> tuple[str, str] | None:
    """(name, namespace) of an HTTP request for ``Host: {name}.{namespace}.<domain>[:port]``, else None."""
    if scope["type"] != "http":
        return None
    host = ""
    for k, v in scope.get("headers", []):
        if k == b"host":
            host = v.decode("latin-1").rsplit(":", 1)[0] if not v.startswith(b"[") else ""
            break
    suffix = "." + DOMAIN
    if not host.endswith(suffix):
        return None
    parts = host[: -len(suffix)].split(".")
    if len(parts) != 2:
        return None
    return parts[0], parts[1]


def served_here(scope: Scope) -> bool:
    """A request for the gateway (either URL form): what the leader's routing table answers, so other
    ketch processes forward it there (server/forward.py)."""
    return scope["type"] == "http" and (scope["path"].startswith("/serving/") or virtual_host(scope) is not None)


class HostRoute(BaseRoute):
    """Matches ``Host: {name}.{namespace}.<domain>[:port]`` on any path (virtual-host routing)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        p = virtual_host(scope)
        if p is None:
            return Match.NONE, {}
        return Match.FULL, {"ketch_host": p}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        name, ns = scope["ketch_host"]
        request = Request(scope, receive)
        resp = await self.gateway.proxy(request, ns, name, scope["path"].lstrip("/"))
        await resp(scope, receive, send)
