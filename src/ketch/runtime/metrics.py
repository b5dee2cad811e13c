"""ketch's own Prometheus registry: what ``/metrics`` on ketch's port serves.

One registry per process, so every layer (the API server's request counters, the controller runtime's
work queues, each component's own series) registers into the same place. Components define their metrics
next to the code that updates them, in modules of their own, registered here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

REGISTRY = CollectorRegistry(auto_describe=True)

_made: dict[str, object] = {}


def metric(cls: type, name: str, doc: str, labels: tuple[str, ...] = (), **kw: object):  # noqa: ANN201 - a prometheus metric
    """``cls(name, doc, labels, registry=REGISTRY)``, once per process: a second call with the same name
    (a component set up again in the same process) gets the first one back instead of a duplicate error."""
    m = _made.get(name)
    if m is None:
        m = _made[name] = cls(name, doc, list(labels), registry=REGISTRY, **kw)
    return m
