"""The InferenceGraph controller: resolves each step's target and hands the graph to the gateway.

KServe deploys a router Deployment per graph; ketch's gateway is already a router on ketch's port, so a
graph is routing state, like an InferenceService's traffic table: reconcile validates the spec, resolves
every ``serviceName`` to that InferenceService's predict path for its protocol (``/v1/models/{m}:predict``
or ``/v2/models/{m}/infer``, as KServe's ``GetPredictorEndpoint``), keeps ``serviceUrl`` steps on ketch's
own gateway in-process, and writes ``status.url`` and the ``Ready`` condition. A step naming a missing or
not yet ready InferenceService keeps the graph not Ready (and not served) until it is: the watch on
InferenceServices wakes the graphs of that namespace.
"""

from __future__ import annotations

import copy
import os
from typing import Any
from urllib.parse import urlsplit

from ketch.kinds.meta import set_condition
from ketch.runtime.controller import Controller, Key, Result, Watch
from ketch.serving.graphspec import service_names, validate
from ketch.serving.router import GraphRoute, Router
from ketch.serving.spec import SpecError, components

IG = ("serving.kserve.io/v1alpha1", "InferenceGraph")
ISVC = ("serving.kserve.io/v1beta1", "InferenceService")


class NotResolved(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class InferenceGraphController(Controller):
    name = "inferencegraph"
    kind = IG
    needs_context = True
    cache_primary = True

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx.api)
        self.ctx = ctx
        self.router: Router = ctx.services["serving-router"]
        self.base_url = ctx.settings.url

    def extra_watches(self) -> list[Watch]:
        def graphs_using(isvc: dict) -> list[Key]:
            ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
            return [Key(ns, g["metadata"]["name"]) for g in self.cached(IG, ns) if name in service_names(g)]

        return [Watch(ISVC, graphs_using)]

    async def reconcile(self, key: Key) -> Result | None:
        graph = self.get(key)
        if graph is None or graph["metadata"].get("deletionTimestamp"):
            self.router.graphs.pop((key.namespace, key.name), None)
            return None
        old = graph.get("status") or {}
        status = copy.deepcopy(old)
        status["observedGeneration"] = graph["metadata"].get("generation", 1)
        was_ready = _ready(old)
        errs = validate(graph)
        try:
            if errs:
                raise NotResolved("InvalidSpec", "; ".join(e.render() for e in errs))
            if self.client.get(ISVC, key.namespace, key.name) is not None:
                raise NotResolved("URLConflict", f"InferenceService {key.namespace}/{key.name} answers at this graph's URL; rename one of them")
            nodes = self._resolve(graph)
        except NotResolved as e:
            self.router.graphs.pop((key.namespace, key.name), None)
            status.pop("url", None)
            status.pop("address", None)
            set_condition(status, "Ready", "False", e.reason, str(e))
        else:
            timeouts = (graph["spec"].get("routerTimeouts") or {})
            self.router.graphs[(key.namespace, key.name)] = GraphRoute(key.namespace, key.name, nodes,
                                                                       float(timeouts["serviceClient"]) if timeouts.get("serviceClient") else None)
            domain = os.environ.get("KETCH_SERVING_DOMAIN", "localhost")
            status["url"] = f"{self.base_url}/serving/{key.namespace}/{key.name}"
            status["address"] = {"url": f"http://{key.name}.{key.namespace}.{domain}:{self.ctx.settings.port}"}
            set_condition(status, "Ready", "True")
        status["deploymentMode"] = "Serverless"
        if status != old:
            graph["status"] = status
            self.update_status(graph)
            now_ready = _ready(status)
            if now_ready and not was_ready:
                self.client.event(graph, "Normal", "InferenceGraphReady", f"InferenceGraph [{key.name}] is Ready")
            elif was_ready and not now_ready:
                self.client.event(graph, "Warning", "InferenceGraphNotReady", f"InferenceGraph [{key.name}] is no longer Ready")
        return None

    def _resolve(self, graph: dict) -> dict[str, dict]:
        ns = graph["metadata"]["namespace"]
        nodes = copy.deepcopy(graph["spec"]["nodes"])
        for nname, node in nodes.items():
            for i, step in enumerate(node.get("steps") or []):
                if step.get("nodeName"):
                    continue
                if step.get("serviceUrl"):
                    step["target"] = self._url_target(step["serviceUrl"])
                    continue
                svc = step["serviceName"]
                isvc = self.client.get(ISVC, ns, svc)
                where = f"spec.nodes.{nname}.steps[{i}].serviceName"
                if isvc is None:
                    raise NotResolved("ServiceNotFound", f"{where}: InferenceService {ns}/{svc} not found")
                if not (isvc.get("status") or {}).get("url"):
                    raise NotResolved("ServiceNotReady", f"{where}: InferenceService {ns}/{svc} is not ready (it has no status.url yet)")
                step["target"] = ("isvc", ns, svc, _predict_path(isvc))
        return nodes

    def _url_target(self, url: str) -> tuple:
        """A URL on ketch's own gateway becomes an in-process hop; any other URL is POSTed."""
        base = urlsplit(self.base_url)
        u = urlsplit(url)
        if (u.scheme, u.netloc) == (base.scheme, base.netloc) and u.path.startswith("/serving/"):
            parts = u.path[len("/serving/"):].split("/", 2)
            if len(parts) >= 2 and parts[0] and parts[1] and not u.query:
                return ("isvc", parts[0], parts[1], parts[2] if len(parts) > 2 else "")
        return ("url", url)


def _predict_path(isvc: dict) -> str:
    name = isvc["metadata"]["name"]
    try:
        pred = components(isvc)["predictor"]
    except SpecError:
        pred = {}
    proto = ((pred.get("model") or {}).get("protocolVersion") or pred.get("protocolVersion") or "v1").lower()
    return f"v2/models/{name}/infer" if proto.startswith(("v2", "grpc")) else f"v1/models/{name}:predict"


def _ready(status: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


CONTROLLERS = [InferenceGraphController]
