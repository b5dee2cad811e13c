"""Suggestion controller: hands out ``spec.requests`` parameter assignments for an Experiment, in process.

Katib runs one gRPC suggestion Deployment per Experiment; here the algorithm is a Python object called in
the reconcile. Each reconcile rebuilds the history from the Experiment's Trials (their assignments and
observed objective), asks the algorithm for what is still owed, and appends the answers, each naming its
future trial (``<experiment>-<8 random chars>``), to ``status.suggestions``. An algorithm that cannot give
more (a finished grid) marks the Suggestion ``Exhausted``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import secrets
import string
from typing import Any

from ketch.kinds.meta import now, set_condition
from ketch.runtime import Controller, Key, Result, Watch
from ketch.tuning.algorithms import ALGORITHMS, Entry
from ketch.tuning.metrics import objective_value
from ketch.tuning.names import EXPERIMENT, EXPERIMENT_LABEL, SUGGESTION, TRIAL, true_condition

log = logging.getLogger(__name__)
# How long one call of an algorithm may take (KETCH_SUGGEST_BUDGET seconds); beyond it the Suggestion fails.
SUGGEST_BUDGET_S = float(os.environ.get("KETCH_SUGGEST_BUDGET", "120"))


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
        return [Watch(TRIAL, lambda t: [Key(t["metadata"].get("namespace", ""), n)] if (n := (t["metadata"].get("labels") or {}).get(EXPERIMENT_LABEL)) else []),
                Watch(EXPERIMENT, lambda e: [Key(e["metadata"].get("namespace", ""), e["metadata"]["name"])])]

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
        ended = true_condition(exp, "Succeeded", "Failed")
        if ended and true_condition(sug, "Succeeded") is None:
            set_condition(status, "Running", "False", "SuggestionSucceeded", f"Experiment has {ended.lower()}")
            set_condition(status, "Succeeded", "True", "SuggestionSucceeded", "Suggestion is succeeded")
            status["completionTime"] = now()
        elif not ended and true_condition(sug, "Succeeded"):  # a restarted experiment
            set_condition(status, "Succeeded", "False", "SuggestionRunning", "Suggestion is running")
            set_condition(status, "Running", "True", "SuggestionRunning", "Suggestion is running")
            status.pop("completionTime", None)
        suggestions = list(status.get("suggestions") or [])
        owed = int((sug.get("spec") or {}).get("requests", 0)) - len(suggestions)
        if owed > 0 and true_condition(sug, "Exhausted", "Failed") is None:
            algo = ALGORITHMS.get(exp["spec"]["algorithm"]["algorithmName"])
            why = self._cannot_suggest(exp, algo)
            if why is not None:
                return self._fail(sug, status, *why)
            trials = self.client.list(TRIAL, key.namespace, {EXPERIMENT_LABEL: key.name})
            names = [trial_name(key.name) for _ in range(owed)]
            cache = self.caches.setdefault(exp["metadata"]["uid"], {})
            history = history_of(exp, trials, suggestions)
            try:
                # Off the event loop, within a time budget: an algorithm is arbitrary CPU work (optuna's GP,
                # a large grid) and must not stall the server or the other controllers.
                new = await asyncio.wait_for(asyncio.to_thread(algo.suggest, exp, history, names, cache), SUGGEST_BUDGET_S)
            except TimeoutError:
                self.caches.pop(exp["metadata"]["uid"], None)
                return self._fail(sug, status, "SuggestionTimedOut", f"algorithm {exp['spec']['algorithm']['algorithmName']!r} took more than {SUGGEST_BUDGET_S:.0f}s to suggest {owed} trial(s)")
            except ModuleNotFoundError as e:
                return self._fail(sug, status, "SuggestionFailed", _missing_extra(exp, e))
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


    def _cannot_suggest(self, exp: dict, algo: Any) -> tuple[str, str] | None:
        """Admission's rules again, for Experiments stored before a rule existed (a grid of 10^9 points
        written by an older ketch must fail with a reason, not take the server down at start-up)."""
        from ketch.tuning.spec import validate_parameters

        name = exp["spec"]["algorithm"]["algorithmName"]
        if algo is None:
            return "SuggestionFailed", f"unknown algorithm {name!r}"
        params = exp["spec"].get("parameters") or []
        problems = [e.render() for e in validate_parameters(params)]
        if not problems:
            settings = {s.get("name"): s.get("value") for s in exp["spec"]["algorithm"].get("algorithmSettings") or []}
            problems = [m for _, m in algo.check(settings, exp["spec"], params)]
        return ("SuggestionFailed", "; ".join(problems)) if problems else None

    def _fail(self, sug: dict, status: dict, reason: str, message: str) -> None:
        set_condition(status, "Running", "False", reason, message)
        set_condition(status, "Failed", "True", reason, message)
        status["lastReconcileTime"] = now()
        new_obj = copy.deepcopy(sug)
        new_obj["status"] = status
        self.client.update_status(new_obj)
        self.client.event(sug, "Warning", reason, message)
        return None


def _missing_extra(exp: dict, e: ModuleNotFoundError) -> str:
    mod = (e.name or str(e)).split(".")[0]
    return (f"algorithm {exp['spec']['algorithm']['algorithmName']!r} needs the Python package {mod!r}, which is not installed: "
            "tuning needs pip install 'ketch[tuning]'")


CONTROLLERS = [SuggestionController]
