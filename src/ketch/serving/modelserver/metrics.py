"""Prometheus metrics of one model server, served at ``/metrics``.

The per-step histograms carry KServe's names (``request_predict_seconds`` and friends, label
``model_name``) so existing dashboards work; request counts, end-to-end latency and batch sizes are ketch's
own, since KServe leaves those to Knative's queue-proxy.
"""

from __future__ import annotations

from prometheus_client import (  # noqa: I001
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.preprocess = Histogram("request_preprocess_seconds", "pre-process request latency", ["model_name"], registry=r)
        self.predict = Histogram("request_predict_seconds", "predict request latency", ["model_name"], registry=r)
        self.postprocess = Histogram("request_postprocess_seconds", "post-process request latency", ["model_name"], registry=r)
        self.explain = Histogram("request_explain_seconds", "explain request latency", ["model_name"], registry=r)
        self.requests = Counter("ketch_model_requests", "inference requests answered", ["model_name", "protocol", "code"], registry=r)
        self.latency = Histogram("ketch_model_request_duration_seconds", "time from request to response", ["model_name", "protocol"], registry=r)
        self.batch = Histogram("ketch_model_batch_size", "rows per predict call after adaptive batching", ["model_name"], buckets=BATCH_BUCKETS, registry=r)
        self._children: dict[tuple, object] = {}

    def child(self, metric: object, *labels: str):  # noqa: ANN201 - prometheus child types are private
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)  # type: ignore[attr-defined]
        return c

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
