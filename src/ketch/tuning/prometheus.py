"""Katib tuning on ketch's ``/metrics``, read from the Experiments' status at each scrape:

- ``ketch_katib_trials{namespace, experiment, state}``: trials by state (Pending, Running, Succeeded,
  Failed, Killed, EarlyStopped, MetricsUnavailable);
- ``ketch_katib_experiment_best_objective{namespace, experiment, metric}``: the objective metric's value
  (``latest``) of the current optimal trial.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from ketch.machinery.client import Client
from ketch.runtime.metrics import REGISTRY
from ketch.tuning.names import EXPERIMENT

STATES = {"Pending": "trialsPending", "Running": "trialsRunning", "Succeeded": "trialsSucceeded", "Failed": "trialsFailed",
          "Killed": "trialsKilled", "EarlyStopped": "trialsEarlyStopped", "MetricsUnavailable": "trialMetricsUnavailable"}


class TuningCollector:
    def __init__(self, api: Any) -> None:
        self.client = Client(api)

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        trials = GaugeMetricFamily("ketch_katib_trials", "Katib trials by state", labels=["namespace", "experiment", "state"])
        best = GaugeMetricFamily("ketch_katib_experiment_best_objective", "objective value of the current optimal trial",
                                 labels=["namespace", "experiment", "metric"])
        try:
            exps = self.client.list(EXPERIMENT)
        except Exception:  # noqa: BLE001 - a scrape must not fail
            exps = []
        for e in exps:
            ns, name = e["metadata"].get("namespace", ""), e["metadata"]["name"]
            st = e.get("status") or {}
            for state, field in STATES.items():
                trials.add_metric([ns, name, state], float(st.get(field) or 0))
            metric_name = ((e.get("spec") or {}).get("objective") or {}).get("objectiveMetricName")
            for m in (((st.get("currentOptimalTrial") or {}).get("observation") or {}).get("metrics") or []):
                if m.get("name") == metric_name:
                    try:
                        best.add_metric([ns, name, metric_name], float(m.get("latest")))
                    except (TypeError, ValueError):
                        pass
        yield trials
        yield best


def _register(ctx: Any) -> Callable[[], Coroutine[Any, Any, None]]:
    try:
        REGISTRY.register(TuningCollector(ctx.api))
    except ValueError:
        pass  # already registered in this process

    async def nothing() -> None:
        return None

    return nothing


TASKS = [_register]
