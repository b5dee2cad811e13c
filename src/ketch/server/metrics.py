"""``/metrics`` on ketch's port, and the API server's own series, under kube-apiserver's names:

- ``apiserver_request_total{verb, group, version, resource, subresource, scope, code}`` and
  ``apiserver_request_duration_seconds{verb, group, version, resource, subresource, scope}`` for every
  Kubernetes API request (``/api``, ``/apis``); verbs as kube-apiserver spells them (GET, LIST, WATCH,
  POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION); watches are counted when they end and not timed;
- ``apiserver_longrunning_requests{verb, group, version, resource, scope}``: open watches;
- ``apiserver_current_inflight_requests{request_kind}``: readOnly / mutating requests in progress.

The middleware is raw ASGI, so streamed responses (watches, logs) pass through untouched. ``/metrics``
renders ketch's registry (runtime/metrics.py): these series, the controller runtime's work queues, each
component's own (serving, pipelines, tuning...) and the process collectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ketch.runtime.metrics import REGISTRY, metric

LABELS = ("verb", "group", "version", "resource", "subresource", "scope")
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60)

requests = metric(Counter, "apiserver_request", "API requests by verb, resource and HTTP code", (*LABELS, "code"))
duration = metric(Histogram, "apiserver_request_duration_seconds", "API request latency (watches excluded)", LABELS, buckets=BUCKETS)
longrunning = metric(Gauge, "apiserver_longrunning_requests", "open long-running requests (watches)", ("verb", "group", "version", "resource", "scope"))
inflight = metric(Gauge, "apiserver_current_inflight_requests", "API requests in progress", ("request_kind",))
_collectors = []


def _process_collectors() -> None:
    if not _collectors:
        _collectors.extend([ProcessCollector(registry=REGISTRY), PlatformCollector(registry=REGISTRY), GCCollector(registry=REGISTRY)])


def classify(method: str, path: str, query: bytes, content_type: str = "") -> tuple[str, ...] | None:
    """(verb, group, version, resource, subresource, scope) of a Kubernetes API path, None for other paths."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return None
    if parts[0] == "api":
        group, rest = "", parts[1:]
    else:
        group, rest = (parts[1] if len(parts) > 1 else ""), parts[2:]
    version, rest = (rest[0], rest[1:]) if rest else ("", [])
    ns = name = None
    sub = ""
    if rest and rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        ns, rest = rest[1], rest[2:]
    resource = rest[0] if rest else ""
    if len(rest) > 1:
        name = rest[1]
    if len(rest) > 2:
        sub = rest[2]
    scope = "resource" if name else ("namespace" if ns else "cluster")
    watch = False
    if method == "GET" and query:
        q = parse_qs(query.decode("latin-1"))
        watch = (q.get("watch") or [""])[0].lower() in ("true", "1")
    if method == "GET":
        verb = "WATCH" if watch else ("GET" if name or not resource else "LIST")
    elif method == "DELETE":
        verb = "DELETE" if name else "DELETECOLLECTION"
    elif method == "PATCH" and "apply-patch" in content_type:
        verb = "APPLY"
    else:
        verb = method
    return verb, group, version, resource, sub, scope


class ApiMetrics:
    """ASGI middleware counting and timing Kubernetes API requests."""

    def __init__(self, app: ASGIApp, bound: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None) -> None:
        self.app = app
        # Label values come from the request path, which anyone may send (refused requests are counted
        # too): ``bound`` maps a path's labels to the served groups, versions, resources and subresources,
        # blank where the path names none, so no request makes a new series beyond what ketch serves.
        self.bound = bound
        self._read = inflight.labels("readOnly")
        self._write = inflight.labels("mutating")
        # The children of the request series by label values: ``labels()`` validates and locks on each
        # call, per request. The label values are bounded as the series are (verbs, resources, codes).
        self._durations: dict[tuple, object] = {}
        self._counts: dict[tuple, object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(("/api/", "/apis")) and scope["path"] != "/api":
            await self.app(scope, receive, send)
            return
        ctype = ""
        for k, v in scope.get("headers", []):
            if k == b"content-type":
                ctype = v.decode("latin-1")
                break
        labels = classify(scope["method"], scope["path"], scope.get("query_string", b""), ctype)
        if labels is None:
            await self.app(scope, receive, send)
            return
        if self.bound is not None:
            labels = self.bound(labels)
        verb = labels[0]
        watch = verb == "WATCH"
        gauge = self._read if scope["method"] in ("GET", "HEAD") else self._write
        lr = longrunning.labels(verb, *labels[1:4], labels[5]) if watch else None
        code = [500]
        t0 = time.perf_counter()

        async def send_wrapper(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                code[0] = msg["status"]
            await send(msg)

        if lr is not None:
            lr.inc()
        else:
            gauge.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if lr is not None:
                lr.dec()
            else:
                gauge.dec()
                d = self._durations.get(labels)
                if d is None:
                    d = self._durations[labels] = duration.labels(*labels)
                d.observe(time.perf_counter() - t0)  # type: ignore[attr-defined]
            key = (*labels, str(code[0]))
            c = self._counts.get(key)
            if c is None:
                c = self._counts[key] = requests.labels(*key)
            c.inc()  # type: ignore[attr-defined]


async def metrics_endpoint(request: Request) -> Response:
    _process_collectors()
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
