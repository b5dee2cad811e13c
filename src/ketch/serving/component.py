"""ketch.serving plugged into ketch: the InferenceService and InferenceGraph controllers, the InferenceGraph
admission rules, and the gateway routes on ketch's port."""

from __future__ import annotations

import ketch.serving as pkg
from ketch.kinds.definitions import FieldError
from ketch.machinery.context import Context
from ketch.runtime import start_controllers
from ketch.serving.gateway import Gateway
from ketch.serving.graphrouter import GraphServer
from ketch.serving.router import Router


def _admit_graph(obj: dict, old: dict | None) -> list[FieldError]:
    from ketch.serving.graphspec import validate

    return validate(obj)


def setup(ctx: Context) -> None:
    router = ctx.services.setdefault("serving-router", Router())
    gateway = Gateway(router)
    gateway.graphs = GraphServer(gateway)
    ctx.services["serving-gateway"] = gateway
    ctx.api.add_validator("serving.kserve.io", "InferenceGraph", _admit_graph)
    ctx.add_routes(gateway.routes())
    ctx.on_shutdown(gateway.close)
    ctx.on_shutdown(gateway.graphs.close)
    start_controllers(ctx, pkg.__name__, pkg.__path__)
