"""The serving control plane's Prometheus series on ketch's ``/metrics``: what the gateway measured per
model (KServe's names where KServe or Knative has one), InferenceGraph node latencies, and the drift and
outlier detectors' results. Created once per process in ketch's registry (runtime/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ketch.runtime.metrics import metric

ISVC = ("namespace", "inferenceservice")
DETECTOR = (*ISVC, "detector")

# the gateway, per model and revision (Knative's queue-proxy series, which KServe's dashboards read)
requests = metric(Counter, "revision_request_count", "requests answered through ketch's gateway",
                  (*ISVC, "component", "revision", "response_code"))
latency = metric(Histogram, "revision_request_latencies_seconds", "time from the gateway receiving a request to the answer",
                 (*ISVC, "component", "revision"))
inflight = metric(Gauge, "revision_app_request_concurrency", "requests in flight through the gateway", (*ISVC, "component", "revision"))
graph_latency = metric(Histogram, "ketch_inferencegraph_node_duration_seconds", "time an InferenceGraph node took",
                       ("namespace", "inferencegraph", "node", "code"))

# drift and outlier detectors
drift_score = metric(Gauge, "ketch_drift_score", "largest per-feature drift statistic of the last test", DETECTOR)
drift_p_value = metric(Gauge, "ketch_drift_p_value", "smallest per-feature p-value of the last drift test", DETECTOR)
drift_threshold = metric(Gauge, "ketch_drift_threshold", "the p-value below which the last test called drift (after correction)", DETECTOR)
is_drift = metric(Gauge, "ketch_drift_is_drift", "1 when the last drift test found drift", DETECTOR)
window_rows = metric(Gauge, "ketch_drift_window_rows", "request rows in the tested window", DETECTOR)
outliers = metric(Counter, "ketch_outlier_instances", "request rows the outlier detector flagged", DETECTOR)
checked = metric(Counter, "ketch_outlier_checked_instances", "request rows the outlier detector scored", DETECTOR)


def forget_detector(ns: str, isvc: str, name: str) -> None:
    for g in (drift_score, drift_p_value, drift_threshold, is_drift, window_rows, outliers, checked):
        try:
            g.remove(ns, isvc, name)
        except KeyError:
            pass
