"""Pipelines on ketch's ``/metrics``:

- ``ketch_pipeline_runs{namespace, state}``: PipelineRuns by state (PENDING, RUNNING, SUCCEEDED, ...),
  counted from the API at each scrape;
- ``ketch_pipeline_task_duration_seconds{namespace, component, state}``: a histogram of task run times
  (start to end), observed once per task when it reaches a final state. A watch of PipelineRuns feeds it;
  after a restart the runs still stored are observed again, as a counter starts over after a restart.
"""

from __future__ import annotations

import collections
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily

from ketch.machinery.client import Client
from ketch.runtime.controller import Controller, Key, Result
from ketch.runtime.metrics import REGISTRY, metric

RUN = ("pipelines.kubeflow.org/v1", "PipelineRun")
FINAL = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CACHED")
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

task_duration = metric(Histogram, "ketch_pipeline_task_duration_seconds", "pipeline task run time, start to end",
                       ("namespace", "component", "state"), buckets=BUCKETS)


class RunsByState:
    """A collector counting PipelineRuns by state when scraped."""

    def __init__(self, api: Any) -> None:
        self.client = Client(api)

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        g = GaugeMetricFamily("ketch_pipeline_runs", "PipelineRuns by state", labels=["namespace", "state"])
        counts: collections.Counter = collections.Counter()
        try:
            runs = self.client.list(RUN)
        except Exception:  # noqa: BLE001 - the kind may not be registered yet; a scrape must not fail
            runs = []
        for r in runs:
            counts[(r["metadata"].get("namespace", ""), (r.get("status") or {}).get("state") or "PENDING")] += 1
        for (ns, state), n in sorted(counts.items()):
            g.add_metric([ns, state], n)
        yield g


class PipelineMetrics(Controller):
    """Observes each task's duration once, when it has finished."""

    name = "pipeline-metrics"
    kind = RUN
    workers = 1

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.seen: dict[str, set[str]] = {}
        try:
            REGISTRY.register(RunsByState(api))
        except ValueError:
            pass  # already registered in this process

    async def reconcile(self, key: Key) -> Result | None:
        run = self.get(key)
        if run is None:
            for uid in [u for u in self.seen if u.startswith(f"{key}/")]:
                del self.seen[uid]
            return None
        seen = self.seen.setdefault(f"{key}/{run['metadata']['uid']}", set())
        for tid, rec in ((run.get("status") or {}).get("tasks") or {}).items():
            if tid in seen or rec.get("state") not in FINAL or not rec.get("startTime") or not rec.get("endTime"):
                continue
            seen.add(tid)
            dt = _seconds(rec["endTime"]) - _seconds(rec["startTime"])
            if dt >= 0:
                task_duration.labels(key.namespace, rec.get("component") or "", rec["state"]).observe(dt)
        return None


def _seconds(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


CONTROLLERS = [PipelineMetrics]
