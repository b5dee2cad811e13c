"""The controller runtime's Prometheus series, under client-go's and controller-runtime's names, so the
dashboards and alerts written for Kubernetes controllers read ketch's too:

- ``workqueue_depth``, ``workqueue_adds_total``, ``workqueue_retries_total``,
  ``workqueue_queue_duration_seconds`` (added to picked up), ``workqueue_work_duration_seconds``
  (label ``name``: the controller);
- ``controller_runtime_reconcile_total`` (``result``: success, error, requeue_after),
  ``controller_runtime_reconcile_errors_total``, ``controller_runtime_reconcile_time_seconds``,
  ``controller_runtime_active_workers`` (label ``controller``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from ketch.runtime.metrics import metric

BUCKETS = (1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0)

depth = metric(Gauge, "workqueue_depth", "current depth of the work queue", ("name",))
adds = metric(Counter, "workqueue_adds", "keys added to the work queue", ("name",))
retries = metric(Counter, "workqueue_retries", "rate-limited re-adds (retries after an error)", ("name",))
queue_duration = metric(Histogram, "workqueue_queue_duration_seconds", "how long a key waits in the queue before a worker takes it",
                        ("name",), buckets=BUCKETS)
work_duration = metric(Histogram, "workqueue_work_duration_seconds", "how long processing a key takes", ("name",), buckets=BUCKETS)
reconciles = metric(Counter, "controller_runtime_reconcile", "reconciles per controller and result", ("controller", "result"))
errors = metric(Counter, "controller_runtime_reconcile_errors", "reconciles that failed", ("controller",))
reconcile_time = metric(Histogram, "controller_runtime_reconcile_time_seconds", "time per reconcile", ("controller",), buckets=BUCKETS)
active = metric(Gauge, "controller_runtime_active_workers", "workers busy reconciling", ("controller",))


@dataclass
class QueueMetrics:
    """The label children of one queue, looked up once (a lookup per event would cost more than the event)."""

    depth: Any
    adds: Any
    retries: Any
    queue_duration: Any
    work_duration: Any

    @classmethod
    def named(cls, name: str) -> QueueMetrics:
        return cls(depth.labels(name), adds.labels(name), retries.labels(name), queue_duration.labels(name), work_duration.labels(name))


@dataclass
class ReconcileMetrics:
    success: Any
    error: Any
    requeue_after: Any
    errors: Any
    time: Any
    active: Any

    @classmethod
    def named(cls, name: str) -> ReconcileMetrics:
        return cls(reconciles.labels(name, "success"), reconciles.labels(name, "error"), reconciles.labels(name, "requeue_after"),
                   errors.labels(name), reconcile_time.labels(name), active.labels(name))
