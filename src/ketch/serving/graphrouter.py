"""Running an InferenceGraph's request, with the semantics of KServe's graph router.

The graph answers at its URL on any path; the body goes to the ``root`` node:

- **Sequence**: steps in order; each gets the graph's request, or with ``data: $response`` the previous
  step's response. A step's ``condition`` is tested on the previous response: when it does not match, the
  sequence stops there and answers that response with status 500 (KServe's behaviour). A failing
  ``dependency: Hard`` step stops the sequence with its own response and status.
- **Switch**: the first step whose condition matches the request runs; none: 404.
- **Ensemble**: all steps at once; the answer is ``{step name (or index): its response}``. A failing Hard
  step's response and status become the answer.
- **Splitter**: one step, drawn by weight (weights sum to 100).

A step is a node of the graph, an InferenceService of the graph's namespace (``serviceName``: its predict
URL for its protocol, as KServe resolves it) or a URL. Steps on ketch's own gateway are called in-process
(the gateway's ``forward``), so a hop costs no second trip through ketch's HTTP server; other URLs are
POSTed with httpx. Errors answer ``{"error": "Failed to process request", "cause": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ketch.serving.graphspec import ROOT, matches
from ketch.serving.router import GraphRoute

if TYPE_CHECKING:
    from ketch.serving.gateway import Gateway

log = logging.getLogger(__name__)
PROPAGATE = (b"content-type", b"x-request-id", b"traceparent", b"tracestate")


class StepFailed(Exception):
    def __init__(self, cause: str, code: int = 500) -> None:
        super().__init__(cause)
        self.code = code


def _ok(code: int) -> bool:
    return 200 <= code <= 299


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _INVALID


_INVALID = object()


class GraphServer:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.router = gateway.router
        self._http: Any = None
        self.observe: Any = None  # fn(namespace, graph, node, seconds, code): the metrics module's hook

    async def serve(self, request: Request, ns: str, name: str) -> Response:
        graph = self.router.graphs[(ns, name)]
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.raw if k in PROPAGATE]
        if not any(k == b"content-type" for k, _ in headers):
            headers.append((b"content-type", b"application/json"))
        try:
            content, code = await self.route(graph, ROOT, body, headers)
        except StepFailed as e:
            return Response(orjson.dumps({"error": "Failed to process request", "cause": str(e)}), e.code, media_type="application/json")
        valid = _json(content) is not _INVALID
        return Response(content, code, media_type="application/json" if valid else None)

    async def route(self, graph: GraphRoute, node_name: str, body: bytes, headers: list) -> tuple[bytes, int]:
        t0 = time.perf_counter()
        code = 500
        try:
            content, code = await self._route(graph, node_name, body, headers)
            return content, code
        except StepFailed as e:
            code = e.code
            raise
        finally:
            if self.observe is not None:
                self.observe(graph.namespace, graph.name, node_name, time.perf_counter() - t0, code)

    async def _route(self, graph: GraphRoute, node_name: str, body: bytes, headers: list) -> tuple[bytes, int]:
        node = graph.nodes[node_name]
        steps = node.get("steps") or []
        rtype = node["routerType"]
        if rtype == "Splitter":
            point, end = random.uniform(0, 100), 0
            for step in steps:
                end += int(step.get("weight") or 0)
                if point < end:
                    return await self.step(graph, step, body, headers)
            return await self.step(graph, steps[-1], body, headers)
        if rtype == "Switch":
            doc = _json(body)
            for step in steps:
                if doc is not _INVALID and matches(doc, step.get("condition") or ""):
                    return await self.step(graph, step, body, headers)
            raise StepFailed(f"None of the routes matched with the switch condition under node {node_name}", 404)
        if rtype == "Ensemble":
            results = await asyncio.gather(*(self.step(graph, s, body, headers) for s in steps), return_exceptions=True)
            merged: dict[str, Any] = {}
            for i, (step, res) in enumerate(zip(steps, results, strict=True)):
                if isinstance(res, BaseException):
                    if isinstance(res, StepFailed):
                        raise res
                    raise StepFailed(f"step {step.get('name') or i}: {type(res).__name__}: {res}")
                content, code = res
                if not _ok(code) and step.get("dependency") == "Hard":
                    return content, code
                doc = _json(content)
                if doc is _INVALID:
                    raise StepFailed(f"step {step.get('name') or i} answered a body that is not JSON")
                merged[step.get("name") or str(i)] = doc
            return orjson.dumps(merged), 200
        if rtype == "Sequence":
            response: bytes = b""
            code = 200
            for i, step in enumerate(steps):
                request = response if step.get("data") == "$response" and i > 0 else body
                if step.get("condition"):
                    doc = _json(response)
                    if doc is _INVALID:
                        raise StepFailed("invalid response")
                    if not matches(doc, step["condition"]):
                        return response, 500
                response, code = await self.step(graph, step, request, headers)
                if step.get("dependency") == "Hard" and not _ok(code):
                    return response, code
            return response, code
        raise StepFailed(f"invalid route type: {rtype}")

    async def step(self, graph: GraphRoute, step: dict, body: bytes, headers: list) -> tuple[bytes, int]:
        if step.get("nodeName"):
            return await self.route(graph, step["nodeName"], body, headers)
        call = self._call(step["target"], body, headers)
        if graph.step_timeout:
            try:
                return await asyncio.wait_for(call, graph.step_timeout)
            except TimeoutError:
                raise StepFailed(f"step {step.get('name') or step['target'][-1]} timed out after {graph.step_timeout:g}s") from None
        return await call

    async def _call(self, target: tuple, body: bytes, headers: list) -> tuple[bytes, int]:
        if target[0] == "isvc":
            _, ns, name, path = target
            code, _h, content = await self.gateway.forward(ns, name, path, "POST", "", headers, body)
            return content, code
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=None)
        try:
            r = await self._http.post(target[1], content=body, headers=[(k.decode(), v.decode()) for k, v in headers])
        except httpx.HTTPError as e:
            raise StepFailed(f"calling {target[1]}: {type(e).__name__}: {e}") from None
        return r.content, r.status_code

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
