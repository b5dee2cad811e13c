"""ketch.serving plugged into ketch: the InferenceService and InferenceGraph controllers, the InferenceGraph
admission rules, and the gateway routes on ketch's port."""

from __future__ import annotations

import ketch.serving as pkg
from ketch.kinds.definitions import FieldError
from ketch.machinery.context import Context
from ketch.runtime import start_controllers
from ketch.serving.gateway import Gateway, served_here
from ketch.serving.graphrouter import GraphServer
from ketch.serving.router import Router


def _observe_graph(ns: str, graph: str, node: str, seconds: float, code: int) -> None:
    from ketch.serving import metrics

    metrics.graph_latency.labels(ns, graph, node, str(code)).observe(seconds)


def _admit_graph(obj: dict, old: dict | None) -> list[FieldError]:
    from ketch.serving.graphspec import validate

    return validate(obj)


def _payload_routes(ctx: Context) -> list:
    """``GET /serving-payloads/{namespace}/{isvc}?limit=100&type=request|response``: the newest logged
    payloads of an InferenceService from the built-in sink (payloads.py), oldest first."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from ketch.serving import payloads

    async def get(request: Request) -> JSONResponse:
        p = request.path_params
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400, "reason": "BadRequest",
                                 "message": "limit: must be an integer"}, 400)
        kind = request.query_params.get("type") or None
        if kind not in (None, "request", "response"):
            return JSONResponse({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400, "reason": "BadRequest",
                                 "message": 'type: supported values: "request", "response"'}, 400)
        d = payloads.directory(ctx.settings.home, p["namespace"], p["name"])
        return JSONResponse({"items": payloads.read(d, max(1, min(limit, 10000)), kind)})

    return [Route("/serving-payloads/{namespace}/{name}", get, methods=["GET"])]


def setup(ctx: Context) -> None:
    router = ctx.services.setdefault("serving-router", Router())
    gateway = Gateway(router)
    gateway.graphs = GraphServer(gateway)
    gateway.graphs.observe = _observe_graph
    ctx.services["serving-gateway"] = gateway
    ctx.api.add_validator("serving.kserve.io", "InferenceGraph", _admit_graph)
    ctx.add_routes(gateway.routes())
    ctx.forward_to_leader(served_here)  # the routing table is the leader's (its controller fills it)
    ctx.add_routes(_payload_routes(ctx))
    ctx.on_shutdown(gateway.close)
    ctx.on_shutdown(gateway.graphs.close)
    start_controllers(ctx, pkg.__name__, pkg.__path__)
