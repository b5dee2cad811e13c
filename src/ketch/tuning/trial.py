"""Trial controller: runs a Trial's ``runSpec`` (a batch Job, a training job, any kind ketch serves) and turns
what it observes into the Trial's status, with no metrics sidecar.

The run object gets the Trial's name and namespace and a controller ownerReference. Every pod template in it
(any ``{metadata, spec: {containers}}`` found in the object, so Jobs, PyTorchJobs and TrainJobs alike) gets
the ``katib.kubeflow.org/{experiment,trial}`` labels, and its primary container the ``KATIB_TRIAL_NAME``,
``KETCH_TRIAL_NAMESPACE`` and ``KETCH_URL`` env vars (what ``ketch.tuning.report`` needs to push metrics).

When the run meets ``successCondition`` or ``failureCondition`` the metrics are collected: StdOut reads the
primary container's log through the API (``pods/log``, whatever kubelet ran it), File reads the file
written on this host (``$(KATIB_TRIAL_NAME)`` in the path is expanded), Push uses what was pushed. The
Trial is then Succeeded (objective observed), MetricsUnavailable (not observed) or Failed, and the run is
deleted unless ``retainRun``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import httpx

from ketch.kinds.meta import now, owner_reference, set_condition
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError
from ketch.machinery.selectors import label_matches
from ketch.runtime import Controller, Key, Result, Watch
from ketch.tuning.conditions import holds
from ketch.tuning.metrics import observation, parse_json, parse_text
from ketch.tuning.names import (
    EXPERIMENT,
    EXPERIMENT_LABEL,
    POD,
    TRIAL,
    TRIAL_LABEL,
    TRIAL_TERMINAL,
    true_condition,
)
from ketch.tuning.observations import ObservationStore
from ketch.tuning.tfevents import TFEventReaderMissing, read_tfevents

log = logging.getLogger(__name__)


def pod_templates(obj: Any) -> list[dict]:
    """Every pod template inside an object of any kind (dicts with ``spec.containers``)."""
    out = []
    if isinstance(obj, dict):
        spec = obj.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("containers"), list) and "template" not in obj:
            out.append(obj)
        for v in obj.values():
            out.extend(pod_templates(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(pod_templates(v))
    return out


METRICS_VOLUME = "metrics-volume"


def add_custom_collector(pod_spec: dict, mc: dict, primary: str, env: list[dict]) -> None:
    """Katib's Custom collector: the user's collector container as a sidecar of the primary pod.

    It gets the trial env (so ``ketch.tuning.report`` pushes for this trial), ``KATIB_PRIMARY_CONTAINER``
    (``ketch.tuning.collector.primary_finished()`` tells it when to stop), and, when the collector spec
    names a ``source.fileSystemPath``, the same ``metrics-volume`` emptyDir as the primary container at
    that path (its directory for kind File), as Katib mounts it.
    """
    cc = copy.deepcopy((mc.get("collector") or {}).get("customCollector") or {})
    cc.setdefault("name", "custom-metrics-logger-and-collector")
    own = env + [{"name": "KATIB_PRIMARY_CONTAINER", "value": primary}]
    cc["env"] = [e for e in cc.get("env") or [] if e.get("name") not in {x["name"] for x in own}] + own
    fsp = (mc.get("source") or {}).get("fileSystemPath") or {}
    if fsp.get("path"):
        path = str(fsp["path"]).rstrip("/") or "/"
        mount = path if fsp.get("kind") == "Directory" else (path.rsplit("/", 1)[0] or "/")
        vols = pod_spec.setdefault("volumes", [])
        if not any(v.get("name") == METRICS_VOLUME for v in vols):
            vols.append({"name": METRICS_VOLUME, "emptyDir": {}})
        for c in [cc, *(c for c in pod_spec["containers"] if c.get("name") == primary)]:
            mounts = c.setdefault("volumeMounts", [])
            if not any(m.get("mountPath") == mount for m in mounts):
                mounts.append({"name": METRICS_VOLUME, "mountPath": mount})
    pod_spec["containers"] = [c for c in pod_spec["containers"] if c.get("name") != cc["name"]] + [cc]


def metric_names(trial: dict) -> list[str]:
    obj = trial["spec"].get("objective") or {}
    return [obj["objectiveMetricName"], *(obj.get("additionalMetricNames") or [])]


def _floats(records: list[dict]) -> list[float]:
    out = []
    for r in records:
        try:
            out.append(float(r["value"]))
        except ValueError:
            pass
    return out


class LogsUnavailable(Exception):
    """A trial pod's log could not be read just now."""


class TrialController(Controller):
    name = "katib-trial"
    kind = TRIAL
    needs_context = True
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx.api)
        self.ctx = ctx
        self.store: ObservationStore = ctx.services["katib-observations"]

    def extra_watches(self) -> list[Watch]:
        # The run object is of any kind; a trial's pods carry its label, and their changes (and the run's,
        # through the pods) bring the trial back. Runs of the known kinds are watched directly too.
        ws = [Watch(POD, lambda o: [Key(o["metadata"].get("namespace", ""), t)] if (t := (o["metadata"].get("labels") or {}).get(TRIAL_LABEL)) else [])]
        for ref in (("batch/v1", "Job"), ("kubeflow.org/v1", "PyTorchJob"), ("kubeflow.org/v1", "TFJob"), ("trainer.kubeflow.org/v1alpha1", "TrainJob")):
            ws.append(Watch(ref, self._owner))
        return ws

    @staticmethod
    def _owner(obj: dict) -> list[Key]:
        return [Key(obj["metadata"].get("namespace", ""), o["name"]) for o in obj["metadata"].get("ownerReferences") or [] if o.get("kind") == "Trial" and o.get("controller")]

    async def reconcile(self, key: Key) -> Result | None:
        try:
            return await self._reconcile(key)
        except LogsUnavailable as e:
            log.info("trial %s: %s; looking again shortly", key, e)
            return Result(requeue_after=0.5)

    async def _reconcile(self, key: Key) -> Result | None:
        trial = self.get(key)
        if trial is None:
            self.store.delete(key.namespace, key.name)  # Katib's clean-metrics-in-db, level-triggered
            return None
        if trial["metadata"].get("deletionTimestamp"):
            return None
        spec = trial["spec"]
        run_spec = spec.get("runSpec") or {}
        ref = (run_spec.get("apiVersion", ""), run_spec.get("kind", ""))
        run = self.client.get(ref, key.namespace, key.name)
        status = copy.deepcopy(trial.get("status") or {})
        if true_condition(trial, *TRIAL_TERMINAL):
            if run is not None and not spec.get("retainRun") and not run["metadata"].get("deletionTimestamp"):
                self.client.delete(ref, key.namespace, key.name, propagation="Background")
            return None
        if run is None:
            self.client.create(self._run_object(trial))
            status.setdefault("startTime", now())
            set_condition(status, "Created", "True", "TrialCreated", "Trial is created")
            self.client.event(trial, "Normal", "JobCreated", f"{ref[1]} {key.name} created")
            return self._write(trial, status)
        if holds(run, spec.get("failureCondition")):
            await self._collect(trial, status)
            set_condition(status, "Running", "False", "TrialFailed", "Trial has failed")
            # the cause is read now: once the Trial is Failed its run, and the run's Pods, are deleted
            msg = "Trial has failed. Job message: " + self._run_message(run, "Failed").rstrip(".") + "." + await self._failure_cause(trial)
            set_condition(status, "Failed", "True", "TrialFailed. Job reason: " + self._run_reason(run, "Failed"), msg)
            status["completionTime"] = now()
            self.client.event(trial, "Warning", "TrialFailed", f"{ref[1]} {key.name} has failed")
            return self._write(trial, status)
        if holds(run, spec.get("successCondition")):
            obs = await self._collect(trial, status)
            objective = next(m for m in obs["metrics"] if m["name"] == metric_names(trial)[0])
            set_condition(status, "Running", "False", "TrialSucceeded", "Trial has succeeded")
            if objective["latest"] == "unavailable":
                set_condition(status, "MetricsUnavailable", "True", "MetricsUnavailable", "Metrics are not available")
            else:
                set_condition(status, "Succeeded", "True", "TrialSucceeded. Job reason: " + self._run_reason(run, "Complete"), "Trial has succeeded")
            status["completionTime"] = now()
            return self._write(trial, status)
        if true_condition(trial, "Running") is None:
            set_condition(status, "Running", "True", "TrialRunning", "Trial is running")
        names = metric_names(trial)
        exp = self.client.get(EXPERIMENT, key.namespace, (trial["metadata"].get("labels") or {}).get(EXPERIMENT_LABEL, ""))
        es = ((exp or {}).get("spec") or {}).get("earlyStopping") or {}
        if es.get("algorithmName") == "medianstop":
            if (trial["spec"].get("metricsCollector") or {}).get("collector", {}).get("kind", "StdOut") != "Push":
                await self._collect(trial, status)  # read the output so far
            rule = self._median_rule(exp, es)
            if rule is not None and self._should_stop(trial, rule, es):
                status["observation"] = observation(self.store.read(key.namespace, key.name), names)
                set_condition(status, "Running", "False", "TrialEarlyStopped", "Trial is early stopped")
                set_condition(status, "EarlyStopped", "True", "TrialEarlyStopped",
                              f"Trial is early stopped: {names[0]} worse than the median-stop rule {rule:g}")
                status["completionTime"] = now()
                self.client.event(trial, "Normal", "TrialEarlyStopped", f"{names[0]} worse than median-stop rule {rule:g}")
                return self._write(trial, status)
        else:
            pushed = self.store.read(key.namespace, key.name)  # live observation from pushed metrics
            if pushed:
                status["observation"] = observation(pushed, names)
        res = self._write(trial, status)
        return res or (Result(requeue_after=1.0) if es else None)

    # -- medianstop (Katib's: the mean over completed trials of their first start_step objective values) ----

    def _median_rule(self, exp: dict, es: dict) -> float | None:
        settings = {s["name"]: s.get("value") for s in es.get("algorithmSettings") or []}
        need, start = int(settings.get("min_trials_required", 3)), int(settings.get("start_step", 4))
        metric = exp["spec"]["objective"]["objectiveMetricName"]
        ns = exp["metadata"]["namespace"]
        avgs = []
        for t in self.client.list(TRIAL, ns, {EXPERIMENT_LABEL: exp["metadata"]["name"]}):
            if true_condition(t, "Succeeded"):
                vals = _floats(self.store.read(ns, t["metadata"]["name"], metric))[:start]
                if vals:
                    avgs.append(sum(vals) / len(vals))
        return sum(avgs) / len(avgs) if len(avgs) >= need else None

    def _should_stop(self, trial: dict, rule: float, es: dict) -> bool:
        settings = {s["name"]: s.get("value") for s in es.get("algorithmSettings") or []}
        start = int(settings.get("start_step", 4))
        md = trial["metadata"]
        vals = _floats(self.store.read(md["namespace"], md["name"], metric_names(trial)[0]))
        if len(vals) < start:
            return False
        maximize = (trial["spec"].get("objective") or {}).get("type") == "maximize"
        return vals[-1] < rule if maximize else vals[-1] > rule

    # -- pieces -------------------------------------------------------------------------------------------------

    def _run_object(self, trial: dict) -> dict:
        md = trial["metadata"]
        spec = trial["spec"]
        run = copy.deepcopy(spec["runSpec"])
        rmd = run.setdefault("metadata", {})
        rmd["name"], rmd["namespace"] = md["name"], md["namespace"]
        exp = (md.get("labels") or {}).get(EXPERIMENT_LABEL, "")
        rmd["labels"] = {**(rmd.get("labels") or {}), EXPERIMENT_LABEL: exp, TRIAL_LABEL: md["name"]}
        rmd["ownerReferences"] = [owner_reference(trial)]
        primary = spec.get("primaryContainerName")
        plabels = spec.get("primaryPodLabels")
        env = [{"name": "KATIB_TRIAL_NAME", "value": md["name"]}, {"name": "KETCH_TRIAL_NAMESPACE", "value": md["namespace"]},
               # the kubelet's KETCH_SERVER: where this Pod reaches ketch (loopback, or the Pod network's gateway)
               {"name": "KETCH_URL", "value": "$(KETCH_SERVER)"}]
        if run.get("kind") == "TrainJob" and str(run.get("apiVersion", "")).startswith("trainer.kubeflow.org/"):
            # A TrainJob holds no pod template (its runtime does): Trainer v2 puts `spec.labels` on every pod
            # and `spec.trainer.env` into the `node` container, which is what the SDK names primary.
            rs = run.setdefault("spec", {})
            rs["labels"] = {**(rs.get("labels") or {}), EXPERIMENT_LABEL: exp, TRIAL_LABEL: md["name"]}
            tr = rs.setdefault("trainer", {})
            tr["env"] = [e for e in tr.get("env") or [] if e.get("name") not in {x["name"] for x in env}] + env
        mc = spec.get("metricsCollector") or {}
        for tmpl in pod_templates(run):
            tmd = tmpl.setdefault("metadata", {})
            tmd["labels"] = {**(tmd.get("labels") or {}), EXPERIMENT_LABEL: exp, TRIAL_LABEL: md["name"]}
            if plabels and not label_matches({"matchLabels": plabels}, tmd["labels"]):
                continue
            for c in tmpl["spec"]["containers"]:
                if c.get("name") == primary:
                    c["env"] = [e for e in c.get("env") or [] if e.get("name") not in {x["name"] for x in env}] + env
            if (mc.get("collector") or {}).get("kind") == "Custom" and any(c.get("name") == primary for c in tmpl["spec"]["containers"]):
                add_custom_collector(tmpl["spec"], mc, primary, env)
        return run

    @staticmethod
    def _run_reason(run: dict, ctype: str) -> str:
        for c in (run.get("status") or {}).get("conditions") or []:
            if c.get("type") == ctype:
                return c.get("reason") or ctype
        return ctype

    @staticmethod
    def _run_message(run: dict, ctype: str) -> str:
        for c in (run.get("status") or {}).get("conditions") or []:
            if c.get("type") == ctype:
                return (c.get("message") or "").split("; last failed pod ")[0] or ctype
        return ctype

    async def _failure_cause(self, trial: dict, lines: int = 20, max_bytes: int = 2048) -> str:
        """What a user needs to act on a failed trial: which Pod's container failed with which exit code, and
        its termination message, or else the tail of its log."""
        md = trial["metadata"]
        failed = []
        for p in self.client.list(POD, md["namespace"], {TRIAL_LABEL: md["name"]}):
            for cs in (p.get("status") or {}).get("containerStatuses") or []:
                for where in ("state", "lastState"):
                    t = (cs.get(where) or {}).get("terminated") or {}
                    if t.get("exitCode"):
                        failed.append((t.get("finishedAt") or "", p, cs["name"], t, where == "lastState"))
        if not failed:
            return ""
        _, pod, container, term, previous = max(failed, key=lambda f: f[0])
        head = f" Pod {pod['metadata']['name']} container {container} exited with code {term['exitCode']} ({term.get('reason') or 'Error'})"
        text = (term.get("message") or "").strip()
        if not text:
            text = (await self._pod_log(md["namespace"], pod["metadata"]["name"], container,
                                        {"tailLines": lines, "limitBytes": max_bytes, **({"previous": "true"} if previous else {})})).strip()
        if len(text.encode()) > max_bytes:
            text = "..." + text.encode()[-max_bytes:].decode(errors="ignore")
        return head + (f"; its last output:\n{text}" if text else ".")

    async def _pod_log(self, namespace: str, pod: str, container: str, params: dict | None = None) -> str:
        """One Pod's log through the API's pods/log (whatever kubelet ran it); empty if there is none.
        LogsUnavailable when the API cannot be reached (ketch still starting): the trial is looked at
        again, rather than judged on missing output (which would fail it as MetricsUnavailable)."""
        async with httpx.AsyncClient(base_url=self.ctx.settings.url, timeout=30, headers=self.ctx.services["authn"].internal_headers()) as h:
            try:
                r = await h.get(f"/api/v1/namespaces/{namespace}/pods/{pod}/log", params={"container": container, **(params or {})})
            except httpx.HTTPError as e:
                raise LogsUnavailable(f"could not read logs of {pod}: {e}") from e
        return r.text if r.status_code == 200 else ""

    async def _collect(self, trial: dict, status: dict) -> dict:
        md, spec = trial["metadata"], trial["spec"]
        names = metric_names(trial)
        mc = spec.get("metricsCollector") or {}
        kind = (mc.get("collector") or {}).get("kind", "StdOut")
        src = mc.get("source") or {}
        filters = (src.get("filter") or {}).get("metricsFormat") or None
        records: list[dict] | None = None
        if kind == "StdOut":
            text = await self._primary_logs(trial)
            records = parse_text(text, names, filters)
        elif kind == "File":
            fsp = src.get("fileSystemPath") or {}
            path = Path(str(fsp.get("path", "")).replace("$(KATIB_TRIAL_NAME)", md["name"]))
            text = path.read_text(errors="replace") if path.is_file() else ""
            records = parse_json(text, names) if fsp.get("format") == "JSON" else parse_text(text, names, filters)
        elif kind == "TensorFlowEvent":
            fsp = src.get("fileSystemPath") or {}
            path = Path(str(fsp.get("path", "")).replace("$(KATIB_TRIAL_NAME)", md["name"]))
            try:
                records = read_tfevents(path, names)
            except TFEventReaderMissing as e:
                self.client.event(trial, "Warning", "MetricsCollectorUnavailable", str(e))
                records = []
        if records is not None:
            self.store.replace_collected(md["namespace"], md["name"], records)
        obs = observation(self.store.read(md["namespace"], md["name"]), names)
        status["observation"] = obs
        return obs

    async def _primary_logs(self, trial: dict) -> str:
        """The primary container's output, read through the API's pods/log (whatever kubelet ran it)."""
        md, spec = trial["metadata"], trial["spec"]
        pods = self.client.list(POD, md["namespace"], {TRIAL_LABEL: md["name"]})
        plabels = spec.get("primaryPodLabels")
        if plabels:
            pods = [p for p in pods if label_matches({"matchLabels": plabels}, p["metadata"].get("labels") or {})]
        pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
        out = []
        for p in pods:
            text = await self._pod_log(md["namespace"], p["metadata"]["name"], spec.get("primaryContainerName", ""))
            if text:
                out.append(text)
        return "\n".join(out)

    def _write(self, trial: dict, status: dict) -> Result | None:
        if status != (trial.get("status") or {}):
            new = copy.deepcopy(trial)
            new["status"] = status
            try:
                self.client.update_status(new)
            except StatusError as e:
                if e.code != 409:
                    raise
                return Result(requeue_after=0.05)
        return None


CONTROLLERS = [TrialController]
