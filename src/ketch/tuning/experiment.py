"""Experiment controller: keeps ``parallelTrialCount`` Trials going, from the Suggestion's assignments, until
the Experiment ends, and reports progress and the best trial in its status.

Each reconcile counts the Experiment's Trials by state, picks the current optimal trial, decides completion
in Katib's order (goal reached, failed-trial budget, trial budget, search space exhausted), and otherwise
raises the Suggestion's ``requests`` to what the budget allows and creates a Trial for each assignment that
has none yet (the trial template with ``${trialParameters.x}`` substituted).
"""

from __future__ import annotations

import copy
import json

from ketch.kinds.meta import now, owner_reference, set_condition
from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result, Watch
from ketch.tuning.metrics import objective_value
from ketch.tuning.names import EXPERIMENT, EXPERIMENT_LABEL, SUGGESTION, TRIAL, true_condition
from ketch.tuning.spec import META_REF


def classify(trial: dict) -> str:
    t = true_condition(trial, "EarlyStopped", "MetricsUnavailable", "Succeeded", "Failed", "Killed", "Running")
    return {None: "Pending"}.get(t, t)  # type: ignore[arg-type]


def substitute(exp: dict, trial_name: str, namespace: str, assignments: dict[str, str]) -> dict:
    """The trial's run object: ``${trialParameters.<name>}`` replaced in the serialized template."""
    tt = exp["spec"]["trialTemplate"]
    ts = tt["trialSpec"]
    text = json.dumps(ts)
    meta = {"Name": trial_name, "Namespace": namespace, "Kind": ts.get("kind", ""), "APIVersion": ts.get("apiVersion", "")}
    labels = (ts.get("metadata") or {}).get("labels") or {}
    annotations = (ts.get("metadata") or {}).get("annotations") or {}
    for tp in tt.get("trialParameters") or []:
        ref = tp.get("reference", "")
        m = META_REF.match(ref)
        if m:
            k = m.group(1)
            if k.startswith("Labels["):
                v = labels.get(k[7:-1], "")
            elif k.startswith("Annotations["):
                v = annotations.get(k[12:-1], "")
            else:
                v = meta[k]
        else:
            v = assignments.get(ref, "")
        text = text.replace("${trialParameters." + tp["name"] + "}", json.dumps(str(v))[1:-1])
    return json.loads(text)


class ExperimentController(Controller):
    name = "katib-experiment"
    kind = EXPERIMENT
    owns = [TRIAL, SUGGESTION]
    workers = 2

    def extra_watches(self) -> list[Watch]:
        return []

    async def reconcile(self, key: Key) -> Result | None:
        exp = self.get(key)
        if exp is None or exp["metadata"].get("deletionTimestamp"):
            return None
        spec = exp["spec"]
        status = copy.deepcopy(exp.get("status") or {})
        if not status.get("startTime"):
            status["startTime"] = now()
            set_condition(status, "Created", "True", "ExperimentCreated", "Experiment is created")
            self.client.event(exp, "Normal", "ExperimentCreated", "Experiment is created")
        trials = [t for t in self.client.list(TRIAL, key.namespace, {EXPERIMENT_LABEL: key.name})
                  if any(o.get("uid") == exp["metadata"]["uid"] for o in t["metadata"].get("ownerReferences") or [])]
        by_state: dict[str, list[str]] = {}
        for t in sorted(trials, key=lambda t: t["metadata"]["name"]):
            by_state.setdefault(classify(t), []).append(t["metadata"]["name"])
        n = {s: len(by_state.get(s, [])) for s in ("Pending", "Running", "Succeeded", "Failed", "Killed", "EarlyStopped", "MetricsUnavailable")}
        status.update({
            "trials": len(trials), "trialsPending": n["Pending"], "trialsRunning": n["Running"], "trialsSucceeded": n["Succeeded"],
            "trialsFailed": n["Failed"], "trialsKilled": n["Killed"], "trialsEarlyStopped": n["EarlyStopped"], "trialMetricsUnavailable": n["MetricsUnavailable"],
        })
        for state, field in (("Pending", "pendingTrialList"), ("Running", "runningTrialList"), ("Succeeded", "succeededTrialList"), ("Failed", "failedTrialList"),
                             ("Killed", "killedTrialList"), ("EarlyStopped", "earlyStoppedTrialList"), ("MetricsUnavailable", "metricsUnavailableTrialList")):
            if by_state.get(state):
                status[field] = by_state[state]
            else:
                status.pop(field, None)
        best, best_value = self._best(exp, trials)
        if best is not None:
            status["currentOptimalTrial"] = {
                "bestTrialName": best["metadata"]["name"],
                "parameterAssignments": best["spec"].get("parameterAssignments") or [],
                "observation": (best.get("status") or {}).get("observation") or {"metrics": []},
            }
        done = true_condition({"status": status}, "Succeeded", "Failed")
        if done == "Succeeded" and self._restartable(exp, status):
            # maxTrialCount was raised on a LongRunning/FromVolume experiment: Katib's restart
            set_condition(status, "Succeeded", "False", "ExperimentRestarting", "Experiment is restarting")
            set_condition(status, "Restarting", "True", "ExperimentRestarting", "Experiment is restarting")
            status.pop("completionTime", None)
            self.client.event(exp, "Normal", "ExperimentRestarting", "Experiment is restarting")
            done = None
        if done:
            return self._write(exp, status)

        sug = self.get(key, SUGGESTION)
        active = n["Pending"] + n["Running"]
        failed = n["Failed"] + n["MetricsUnavailable"]
        completed = n["Succeeded"] + n["Failed"] + n["Killed"] + n["EarlyStopped"] + n["MetricsUnavailable"]
        goal = spec["objective"].get("goal")
        maximize = spec["objective"]["type"] == "maximize"
        end: tuple[str, str, str] | None = None
        if goal is not None and best_value is not None and (best_value >= goal if maximize else best_value <= goal):
            end = ("Succeeded", "ExperimentGoalReached", "Experiment has succeeded because Objective goal has reached")
        elif spec.get("maxFailedTrialCount") is not None and failed and failed >= spec["maxFailedTrialCount"]:
            end = ("Failed", "ExperimentMaxFailedTrialsReached", "Experiment has failed because max failed count has reached")
        elif spec.get("maxTrialCount") is not None and completed >= spec["maxTrialCount"]:
            end = ("Succeeded", "ExperimentMaxTrialsReached", "Experiment has succeeded because max trial count has reached")
        elif sug is not None and true_condition(sug, "Exhausted") and active == 0 and len((sug.get("status") or {}).get("suggestions") or []) <= len(trials):
            end = ("Succeeded", "ExperimentSuggestionEndReached", "Experiment has succeeded because suggestion service has reached the end")
        elif sug is not None and true_condition(sug, "Failed"):
            why = next((c for c in (sug.get("status") or {}).get("conditions") or [] if c.get("type") == "Failed"), {})
            end = ("Failed", why.get("reason") or "SuggestionFailed", f"Suggestion failed: {why.get('message', '')}")
        if end is not None:
            set_condition(status, "Running", "False", end[1], end[2])
            set_condition(status, end[0], "True", end[1], end[2])
            status["completionTime"] = now()
            self.client.event(exp, "Normal" if end[0] == "Succeeded" else "Warning", end[1], end[2])
            return self._write(exp, status)
        if true_condition({"status": status}, "Running") is None:
            set_condition(status, "Running", "True", "ExperimentRunning", "Experiment is running")
            if true_condition({"status": status}, "Restarting"):
                set_condition(status, "Restarting", "False", "ExperimentRunning", "Experiment is running")

        parallel = int(spec.get("parallelTrialCount", 3))
        budget = parallel if spec.get("maxTrialCount") is None else min(parallel, int(spec["maxTrialCount"]) - (completed - n["MetricsUnavailable"]))
        want = max(0, budget - active)
        if active > parallel:  # parallelTrialCount was lowered: Katib deletes the excess, newest first
            excess = sorted((t for t in trials if classify(t) in ("Pending", "Running")),
                            key=lambda t: (classify(t) == "Pending", t["metadata"].get("creationTimestamp", ""), t["metadata"]["name"]), reverse=True)
            for t in excess[: active - parallel]:
                self.client.delete(TRIAL, key.namespace, t["metadata"]["name"])
                self.client.event(exp, "Normal", "TrialDeleted", f"Trial {t['metadata']['name']} deleted: parallelTrialCount lowered")
        if sug is None:
            self.client.create({
                "apiVersion": "kubeflow.org/v1beta1", "kind": "Suggestion",
                "metadata": {"name": key.name, "namespace": key.namespace, "labels": {EXPERIMENT_LABEL: key.name}, "ownerReferences": [owner_reference(exp)]},
                "spec": {"algorithm": spec["algorithm"], "earlyStopping": spec.get("earlyStopping"), "requests": want, "resumePolicy": spec.get("resumePolicy", "Never")},
            })
            return self._write(exp, status)
        have = {t["metadata"]["name"] for t in trials}
        unused = [s for s in (sug.get("status") or {}).get("suggestions") or [] if s["name"] not in have]
        for s in unused[:want]:
            self._create_trial(exp, s)
            status["trials"] += 1
            status["trialsPending"] += 1
            status.setdefault("pendingTrialList", []).append(s["name"])
        requests = len(trials) + min(want, len(unused)) + max(0, want - len(unused))
        if requests > int((sug.get("spec") or {}).get("requests", 0)):
            self.client.patch(SUGGESTION, key.namespace, key.name, {"spec": {"requests": requests}})
        return self._write(exp, status)

    @staticmethod
    def _restartable(exp: dict, status: dict) -> bool:
        spec = exp["spec"]
        succ = next((c for c in status.get("conditions") or [] if c.get("type") == "Succeeded"), {})
        return (succ.get("reason") == "ExperimentMaxTrialsReached" and spec.get("resumePolicy") in ("LongRunning", "FromVolume")
                and spec.get("maxTrialCount") is not None and int(spec["maxTrialCount"]) > int(status.get("trials", 0)))

    def _best(self, exp: dict, trials: list[dict]) -> tuple[dict | None, float | None]:
        obj = exp["spec"]["objective"]
        strategies = {m["name"]: m.get("value", "latest") for m in obj.get("metricStrategies") or []}
        name = obj["objectiveMetricName"]
        maximize = obj["type"] == "maximize"
        best, best_v = None, None
        for t in trials:
            v = objective_value((t.get("status") or {}).get("observation"), name, strategies.get(name, "latest"))
            if v is None:
                continue
            if best_v is None or (v > best_v if maximize else v < best_v):
                best, best_v = t, v
        return best, best_v

    def _create_trial(self, exp: dict, s: dict) -> None:
        spec = exp["spec"]
        tt = spec["trialTemplate"]
        ns = exp["metadata"]["namespace"]
        assignments = {p["name"]: p["value"] for p in s.get("parameterAssignments") or []}
        trial = {
            "apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
            "metadata": {"name": s["name"], "namespace": ns, "labels": {EXPERIMENT_LABEL: exp["metadata"]["name"], **(s.get("labels") or {})},
                         "ownerReferences": [owner_reference(exp)]},
            "spec": {
                "objective": spec["objective"],
                "parameterAssignments": s.get("parameterAssignments") or [],
                "runSpec": substitute(exp, s["name"], ns, assignments),
                "metricsCollector": spec.get("metricsCollectorSpec") or {"collector": {"kind": "StdOut"}},
                "primaryContainerName": tt.get("primaryContainerName"),
                "successCondition": tt.get("successCondition"),
                "failureCondition": tt.get("failureCondition"),
                "retainRun": bool(tt.get("retain")),
            },
        }
        if tt.get("primaryPodLabels"):
            trial["spec"]["primaryPodLabels"] = tt["primaryPodLabels"]
        try:
            self.client.create(trial)
        except StatusError as e:
            if e.code != 409:
                raise

    def _write(self, exp: dict, status: dict) -> Result | None:
        if status != (exp.get("status") or {}):
            new = copy.deepcopy(exp)
            new["status"] = status
            self.client.update_status(new)
        return None


CONTROLLERS = [ExperimentController]
