"""Suggestion controller: hands out ``spec.requests`` parameter assignments for an Experiment, in process.

Katib runs one gRPC suggestion Deployment per Experiment; here the algorithm is a Python object called in
the reconcile. Each reconcile rebuilds the history from the Experiment's Trials (their assignments and
observed objective), asks the algorithm for what is still owed, and appends the answers, each naming its
future trial (``<experiment>-<8 random chars>``), to ``status.suggestions``. An algorithm that cannot give
more (a finished grid) marks the Suggestion ``Exhausted``.

``resumePolicy`` decides what happens to the algorithm's live state (Katib's suggestion Deployment) when
the Experiment ends: ``Never`` releases it; ``LongRunning`` keeps it in memory, so a restarted Experiment
continues with the same sampler; ``FromVolume`` writes it to the PersistentVolumeClaim
``<suggestion>-<algorithm>`` (Katib's name; its directory ``KETCH_HOME/volumes/<ns>/<claim>``, as the kubelet
lays claims out) after every round and releases it on completion; a restart, or a restart of ketch, reads it
back from there instead of rebuilding it from the trials.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import pickle
import secrets
import string
from pathlib import Path
from typing import Any

from ketch.kinds.meta import now, owner_reference, set_condition
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError
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

    needs_context = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx.api)
        self.home = Path(ctx.settings.home)
        self.caches: dict[str, dict] = {}  # experiment uid -> the algorithm's live state (rebuildable)

    # -- resumePolicy: FromVolume ------------------------------------------------------------------------

    def _claim(self, sug: dict, exp: dict) -> tuple[str, Path]:
        claim = f"{sug['metadata']['name']}-{exp['spec']['algorithm']['algorithmName']}"
        return claim, self.home / "volumes" / sug["metadata"]["namespace"] / claim

    def _save(self, sug: dict, exp: dict, cache: dict) -> None:
        claim, d = self._claim(sug, exp)
        if self.client.get(("v1", "PersistentVolumeClaim"), sug["metadata"]["namespace"], claim) is None:
            pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": claim, "namespace": sug["metadata"]["namespace"], "ownerReferences": [owner_reference(sug)],
                                "labels": {EXPERIMENT_LABEL: exp["metadata"]["name"]}},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
            try:
                self.client.create(pvc)
            except StatusError as e:
                if e.code != 409:
                    raise
        try:
            data = pickle.dumps(cache)
        except Exception as e:  # noqa: BLE001 - an algorithm whose state cannot be saved is rebuilt from the trials
            log.warning("suggestion %s: cannot save the algorithm state: %s", sug["metadata"]["name"], e)
            return
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "state.pkl.tmp"
        tmp.write_bytes(data)
        tmp.replace(d / "state.pkl")

    def _load(self, sug: dict, exp: dict) -> dict | None:
        p = self._claim(sug, exp)[1] / "state.pkl"
        if not p.exists():
            return None
        try:
            cache = pickle.loads(p.read_bytes())
        except Exception as e:  # noqa: BLE001 - a damaged state: rebuild from the trials instead
            log.warning("suggestion %s: cannot read %s: %s", sug["metadata"]["name"], p, e)
            return None
        self.client.event(sug, "Normal", "SuggestionStateRestored", f"algorithm state read back from volume {p.parent.name}")
        return cache

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
        policy = exp["spec"].get("resumePolicy") or "Never"
        uid = exp["metadata"]["uid"]
        if ended and true_condition(sug, "Succeeded") is None:
            set_condition(status, "Running", "False", "SuggestionSucceeded", f"Experiment has {ended.lower()}")
            set_condition(status, "Succeeded", "True", "SuggestionSucceeded", "Suggestion is succeeded")
            status["completionTime"] = now()
            if policy == "FromVolume" and uid in self.caches:
                self._save(sug, exp, self.caches[uid])
            if policy != "LongRunning":
                self.caches.pop(uid, None)  # the suggestion "Deployment" goes away
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
            if uid not in self.caches and policy == "FromVolume":
                self.caches[uid] = self._load(sug, exp) or {}
            cache = self.caches.setdefault(uid, {})
            history = history_of(exp, trials, suggestions)
            try:
                # Off the event loop, within a time budget: an algorithm is arbitrary CPU work (optuna's GP,
                # a large grid) and must not stall the server or the other controllers.
                new = await asyncio.wait_for(asyncio.to_thread(algo.suggest, exp, history, names, cache), SUGGEST_BUDGET_S)
            except TimeoutError:
                self.caches.pop(uid, None)
                return self._fail(sug, status, "SuggestionTimedOut", f"algorithm {exp['spec']['algorithm']['algorithmName']!r} took more than {SUGGEST_BUDGET_S:.0f}s to suggest {owed} trial(s)")
            except ModuleNotFoundError as e:
                return self._fail(sug, status, "SuggestionFailed", _missing_extra(exp, e))
            if policy == "FromVolume":
                self._save(sug, exp, cache)
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
        nas = exp["spec"].get("nasConfig")
        if nas:  # a NAS search space is checked by its own rules, and parameters are optional beside it
            from ketch.tuning.algorithms import nas_space

            problems = [e.render() for e in nas_space.validate(nas) + (validate_parameters(params) if params else [])]
        else:
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
