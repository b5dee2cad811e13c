"""Suggestion controller: hands out ``spec.requests`` parameter assignments for an Experiment, in process.

Katib runs one gRPC suggestion Deployment per Experiment; here the algorithm is a Python object called in
the reconcile. Each reconcile rebuilds the history from the Experiment's Trials (their assignments and
observed objective), asks the algorithm for what is still owed, and appends the answers, each naming its
future trial (``<experiment>-<8 random chars>``), to ``status.suggestions``. An algorithm that cannot give
more (a finished grid) marks the Suggestion ``Exhausted``.
"""

from __future__ import annotations

import copy
import logging
import secrets
import string
from typing import Any

from ketch.kinds.meta import now, set_condition
from ketch.runtime import Controller, Key, Result, Watch
from ketch.tuning.algorithms import ALGORITHMS, Entry
from ketch.tuning.metrics import objective_value
from ketch.tuning.names import EXPERIMENT, EXPERIMENT_LABEL, SUGGESTION, TRIAL, true_condition

log = logging.getLogger(__name__)


def trial_name(exp: str) -> str:
    return f"{exp}-" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def history_of(exp: dict, trials: list[dict], suggestions: list[dict]) -> list[Entry]:
    """What the algorithm learns from: every suggestion handed out, with its trial's outcome if known."""
    obj = exp["spec"]["objective"]
    strategies = {m["name"]: m.get("value", "latest") for m in obj.get("metricStrategies") or []}
    by_name = {t["metadata"]["name"]: t for t in trials}
    out = []
    for s in suggestions:
        a = {p["name"]: p["value"] for p in s.get("parameterAssignments") or []}
        t = by_name.get(s["name"])
        state, value = "running", None
        if t is not None:
            done = true_condition(t, "Succeeded", "EarlyStopped", "Failed", "MetricsUnavailable", "Killed")
            if done in ("Succeeded", "EarlyStopped"):
                value = objective_value((t.get("status") or {}).get("observation"), obj["objectiveMetricName"], strategies.get(obj["objectiveMetricName"], "latest"))
                state = "complete" if value is not None else "failed"
            elif done is not None:
                state = "failed"
        out.append(Entry(s["name"], a, state, value, dict(s.get("labels") or {})))
    return out


class SuggestionController(Controller):
    name = "katib-suggestion"
    kind = SUGGESTION
    workers = 2

    def extra_watches(self) -> list[Watch]:
        # finished trials may let an algorithm that waits on them (hyperband) suggest more
        return [Watch(TRIAL, lambda t: [Key(t["metadata"].get("namespace", ""), n)] if (n := (t["metadata"].get("labels") or {}).get(EXPERIMENT_LABEL)) else [])]

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.caches: dict[str, dict] = {}  # experiment uid -> the algorithm's live state (rebuildable)

    async def reconcile(self, key: Key) -> Result | None:
        sug = self.get(key)
        if sug is None:
            return None
        exp = self.get(key, EXPERIMENT)
        if exp is None or sug["metadata"].get("deletionTimestamp"):
            self.caches = {k: v for k, v in self.caches.items() if exp is None or k != exp["metadata"]["uid"]}
            return None
        status = copy.deepcopy(sug.get("status") or {})
        if not status.get("startTime"):
            status["startTime"] = now()
            set_condition(status, "Created", "True", "SuggestionCreated", "Suggestion is created")
            set_condition(status, "Running", "True", "SuggestionRunning", "Suggestion is running")
        suggestions = list(status.get("suggestions") or [])
        owed = int((sug.get("spec") or {}).get("requests", 0)) - len(suggestions)
        if owed > 0 and true_condition(sug, "Exhausted") is None:
            algo = ALGORITHMS[exp["spec"]["algorithm"]["algorithmName"]]
            trials = self.client.list(TRIAL, key.namespace, {EXPERIMENT_LABEL: key.name})
            names = [trial_name(key.name) for _ in range(owed)]
            cache = self.caches.setdefault(exp["metadata"]["uid"], {})
            history = history_of(exp, trials, suggestions)
            new = algo.suggest(exp, history, names, cache)
            for n, item in zip(names, new, strict=False):
                a, labels = item if isinstance(item, tuple) else (item, {})
                s = {"name": n, "parameterAssignments": [{"name": k, "value": v} for k, v in a.items()]}
                if labels:
                    s["labels"] = labels
                suggestions.append(s)
                history.append(Entry(n, a, "running", labels=labels))
            done = algo.exhausted(exp, history)
            if done or (done is None and len(new) < owed):
                set_condition(status, "Exhausted", "True", "SuggestionEndReached", "the search space has no more points to suggest")
            status["suggestions"] = suggestions
            status["suggestionCount"] = len(suggestions)
        status["lastReconcileTime"] = now()
        if {k: v for k, v in status.items() if k != "lastReconcileTime"} != {k: v for k, v in (sug.get("status") or {}).items() if k != "lastReconcileTime"}:
            new_obj = copy.deepcopy(sug)
            new_obj["status"] = status
            self.client.update_status(new_obj)
        return None


CONTROLLERS = [SuggestionController]
