"""The gateway's routing table and the request statistics the autoscaler reads.

The controller writes the table after every reconcile (which revisions of which component get what share
of traffic, and the ready endpoints of each); the gateway reads it per request. It is derived state, like
kube-proxy's rules: after a restart every InferenceService is reconciled again and the table rebuilt.
The statistics (in-flight requests integrated over time, request counts, requests waiting for a cold
start) are the observed metrics Knative's autoscaler would scrape from its queue-proxies.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Target:
    revision: str
    percent: int
    endpoints: list[str]  # "127.0.0.1:port" of ready replicas
    grpc_endpoints: list[str] = field(default_factory=list)  # their gRPC ports, for those serving gRPC


@dataclass
class Stats:
    inflight: int = 0
    requests: int = 0
    waiting: int = 0  # requests held for a cold start
    last_request: float = 0.0
    _integral: float = 0.0  # in-flight requests integrated over time (request-seconds)
    _t: float = field(default_factory=time.monotonic)
    # what the autoscaler last sampled
    sample_t: float = field(default_factory=time.monotonic)
    sample_integral: float = 0.0
    sample_requests: int = 0
    recommendations: list[tuple[float, int]] = field(default_factory=list)

    def _advance(self) -> None:
        now = time.monotonic()
        self._integral += self.inflight * (now - self._t)
        self._t = now

    def start(self) -> None:
        self._advance()
        self.inflight += 1
        self.requests += 1
        self.last_request = time.monotonic()

    def end(self) -> None:
        self._advance()
        self.inflight -= 1
        self.last_request = time.monotonic()

    def sample(self) -> tuple[float, float]:
        """(average concurrency, requests per second) since the previous sample."""
        self._advance()
        now = time.monotonic()
        dt = max(now - self.sample_t, 1e-3)
        conc = (self._integral - self.sample_integral) / dt
        rps = (self.requests - self.sample_requests) / dt
        self.sample_t, self.sample_integral, self.sample_requests = now, self._integral, self.requests
        return conc, rps


@dataclass
class Route:
    namespace: str
    name: str
    components: dict[str, list[Target]] = field(default_factory=dict)  # component -> weighted targets
    entry: str = "predictor"  # transformer when there is one
    timeout: float = 60.0
    canaries: list[tuple[str, int]] = field(default_factory=list)  # ready spec.canary[] entries: (component key, percent)


@dataclass
class GraphRoute:
    """An InferenceGraph as the gateway runs it: its nodes, each step's target resolved by the controller
    (``target``: ``("isvc", namespace, name, path)`` for an in-process hop, ``("url", url)`` otherwise)."""

    namespace: str
    name: str
    nodes: dict[str, dict]
    step_timeout: float | None = None  # routerTimeouts.serviceClient


class Router:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.graphs: dict[tuple[str, str], GraphRoute] = {}
        self.stats: dict[tuple[str, str, str, str], Stats] = {}  # (ns, name, component, revision)
        self.on_demand: Callable[[str, str], None] | None = None  # wakes the controller for a cold start
        self._changed = asyncio.Condition() if _loop() else None

    def set(self, route: Route) -> None:
        self.routes[(route.namespace, route.name)] = route
        self._notify()

    def remove(self, namespace: str, name: str) -> None:
        self.routes.pop((namespace, name), None)
        for k in [k for k in self.stats if k[:2] == (namespace, name)]:
            del self.stats[k]
        self._notify()

    def stat(self, ns: str, name: str, component: str, revision: str) -> Stats:
        k = (ns, name, component, revision)
        s = self.stats.get(k)
        if s is None:
            s = self.stats[k] = Stats()
        return s

    def _notify(self) -> None:
        if self._changed is None:
            try:
                self._changed = asyncio.Condition()
            except RuntimeError:
                return
        cond = self._changed

        async def wake() -> None:
            async with cond:
                cond.notify_all()

        try:
            asyncio.get_running_loop().create_task(wake())
        except RuntimeError:
            pass

    def pick(self, ns: str, name: str, component: str, grpc: bool = False) -> tuple[str, str | None]:
        """(revision, endpoint) by traffic weight; endpoint None when that revision has no ready replica
        (``grpc``: only revisions whose replicas serve gRPC, and their gRPC endpoints)."""
        route = self.routes.get((ns, name))
        targets = [t for t in (route.components.get(component, []) if route else []) if t.percent > 0 and (not grpc or t.grpc_endpoints)]
        if not targets:
            return "", None
        r = random.uniform(0, sum(t.percent for t in targets))
        for t in targets:
            r -= t.percent
            if r <= 0:
                break
        eps = t.grpc_endpoints if grpc else t.endpoints
        if not eps:
            return t.revision, None
        return t.revision, random.choice(eps)

    async def wait_endpoint(self, ns: str, name: str, component: str, timeout: float) -> tuple[str, str | None]:
        """Hold a request while its revision scales from zero (the activator's job in Knative)."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        deadline = time.monotonic() + timeout
        rev, ep = self.pick(ns, name, component)
        if ep is not None:
            return rev, ep
        waiting = [self.stat(ns, name, component, rev)] if rev else []
        for s in waiting:
            s.waiting += 1
        try:
            while ep is None:
                if self.on_demand is not None:
                    self.on_demand(ns, name)
                left = deadline - time.monotonic()
                if left <= 0:
                    return rev, None
                async with self._changed:
                    try:
                        await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
                    except TimeoutError:
                        pass
                rev, ep = self.pick(ns, name, component)
            return rev, ep
        finally:
            for s in waiting:
                s.waiting -= 1


def _loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False
