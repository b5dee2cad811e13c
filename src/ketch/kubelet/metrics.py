"""Resource metrics: the kubelet samples each running container's process tree with psutil (CPU time
and resident memory) and serves ``metrics.k8s.io/v1beta1`` PodMetrics and NodeMetrics from memory, as
metrics-server does for a cluster. ``kubectl top pods|nodes`` and the HorizontalPodAutoscaler read them.

CPU usage is the rate of the tree's CPU seconds between the last two samples (``window``), memory the sum
of the tree's RSS at the last sample. The sampling period is ``KETCH_METRICS_INTERVAL`` seconds (default
5; metrics-server's default resolution is 15). A Pod appears once two samples of it exist. The node's
figures are the machine's (psutil's CPU percent over the window times its cores, memory in use).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

import orjson
import psutil
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ketch.kinds.meta import now
from ketch.kubelet import process
from ketch.machinery.errors import StatusError, method_not_allowed
from ketch.machinery.selectors import parse_label_selector

GROUP = "metrics.k8s.io/v1beta1"


def interval() -> float:
    return float(os.environ.get("KETCH_METRICS_INTERVAL", "5"))


@dataclass
class _Sample:
    at: float
    cpu: dict[str, float]  # container -> CPU seconds
    pid: dict[str, int]


@dataclass
class PodUsage:
    namespace: str
    name: str
    labels: dict[str, str]
    timestamp: str
    window: float
    containers: dict[str, tuple[float, int]] = field(default_factory=dict)  # name -> (cores, bytes)


def _cpu(cores: float) -> str:
    return f"{max(0, round(cores * 1e9))}n"


def _mem(b: int) -> str:
    return f"{max(0, b) // 1024}Ki"


class MetricsSampler:
    """Samples ``kubelet.workers`` every ``interval()`` seconds; ``pod(ns, name)`` / ``pods(ns)`` give the
    latest usage (what ``ctx.services["metrics"]`` offers the autoscaler)."""

    def __init__(self, kubelet: object) -> None:
        self.kubelet = kubelet
        self.last: dict[str, _Sample] = {}  # pod uid -> previous sample
        self.usage: dict[tuple[str, str], PodUsage] = {}
        self.node: tuple[str, float, float, int] | None = None  # (timestamp, window, cores, bytes)
        psutil.cpu_percent(None)
        self._node_at = time.monotonic()

    def sample(self) -> None:
        t = time.monotonic()
        stamp = now()
        fresh: dict[tuple[str, str], PodUsage] = {}
        seen = set()
        for uid, w in list(getattr(self.kubelet, "workers", {}).items()):
            cpu: dict[str, float] = {}
            pids: dict[str, int] = {}
            mem: dict[str, int] = {}
            for cname, cs in list(w.cs.items()):
                if cs.running and cs.pid and w.pod and cname in {c["name"] for c in (w.pod.get("spec") or {}).get("containers") or []}:
                    cpu[cname] = process.cpu_seconds(cs.pid)
                    pids[cname] = cs.pid
                    mem[cname] = process.rss(cs.pid)
            if not cpu:
                continue
            seen.add(uid)
            prev = self.last.get(uid)
            self.last[uid] = _Sample(t, cpu, pids)
            if prev is None or t - prev.at <= 0:
                continue
            win = t - prev.at
            md = w.pod["metadata"]
            u = PodUsage(w.ns, w.name, dict(md.get("labels") or {}), stamp, win)
            for cname, secs in cpu.items():
                before = prev.cpu.get(cname) if prev.pid.get(cname) == pids[cname] else None
                rate = (secs - before) / win if before is not None else 0.0
                u.containers[cname] = (max(0.0, rate), mem[cname])
            fresh[(w.ns, w.name)] = u
        for uid in set(self.last) - seen:
            del self.last[uid]
        self.usage = fresh
        win = t - self._node_at
        self._node_at = t
        vm = psutil.virtual_memory()
        self.node = (stamp, win, psutil.cpu_percent(None) / 100 * (psutil.cpu_count() or 1), vm.total - vm.available)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(interval())
            await asyncio.to_thread(self.sample)

    # -- reads ------------------------------------------------------------------------------------------

    def pod(self, ns: str, name: str) -> PodUsage | None:
        return self.usage.get((ns, name))

    def pods(self, ns: str | None = None) -> list[PodUsage]:
        return [u for (n, _), u in sorted(self.usage.items()) if ns is None or n == ns]

    def pod_metrics(self, u: PodUsage) -> dict:
        return {
            "kind": "PodMetrics", "apiVersion": GROUP,
            "metadata": {"name": u.name, "namespace": u.namespace, "labels": u.labels, "creationTimestamp": now()},
            "timestamp": u.timestamp, "window": f"{u.window:.3f}s",
            "containers": [{"name": c, "usage": {"cpu": _cpu(cpu), "memory": _mem(mem)}} for c, (cpu, mem) in u.containers.items()],
        }

    def node_metrics(self) -> list[dict]:
        if self.node is None:
            return []
        stamp, win, cores, mem = self.node
        name = getattr(self.kubelet, "node_name", "")
        return [{
            "kind": "NodeMetrics", "apiVersion": GROUP,
            "metadata": {"name": name, "labels": {}, "creationTimestamp": now()},
            "timestamp": stamp, "window": f"{win:.3f}s", "usage": {"cpu": _cpu(cores), "memory": _mem(mem)},
        }]


def _json(data: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _not_found(kind: str, name: str) -> Response:
    e = StatusError(404, "NotFound", f'{kind}.metrics.k8s.io "{name}" not found', {"name": name, "group": "metrics.k8s.io", "kind": kind})
    return _json(e.status(), 404)


def routes(sampler: MetricsSampler) -> list[Route]:
    """GET routes for the metrics group, ahead of the Kubernetes API (which answers other verbs: 405)."""

    def _list(kind: str, items: list[dict]) -> Response:
        return _json({"kind": f"{kind}List", "apiVersion": GROUP, "metadata": {}, "items": items})

    async def pods(request: Request) -> Response:
        if request.method != "GET":
            return _json(method_not_allowed("the server does not allow this method on the requested resource").status(), 405)
        ns = request.path_params.get("namespace")
        name = request.path_params.get("name")
        if name:
            u = sampler.pod(ns or "", name)
            return _json(sampler.pod_metrics(u)) if u is not None else _not_found("pods", name)
        match = parse_label_selector(request.query_params.get("labelSelector"))
        return _list("PodMetrics", [sampler.pod_metrics(u) for u in sampler.pods(ns) if match(u.labels)])

    async def nodes(request: Request) -> Response:
        if request.method != "GET":
            return _json(method_not_allowed("the server does not allow this method on the requested resource").status(), 405)
        name = request.path_params.get("name")
        items = sampler.node_metrics()
        if name:
            hit = [n for n in items if n["metadata"]["name"] == name]
            return _json(hit[0]) if hit else _not_found("nodes", name)
        return _list("NodeMetrics", items)

    base = "/apis/metrics.k8s.io/v1beta1"
    return [
        Route(f"{base}/pods", pods), Route(f"{base}/namespaces/{{namespace}}/pods", pods),
        Route(f"{base}/namespaces/{{namespace}}/pods/{{name}}", pods),
        Route(f"{base}/nodes", nodes), Route(f"{base}/nodes/{{name}}", nodes),
    ]


__all__ = ["MetricsSampler", "PodUsage", "routes", "interval"]
