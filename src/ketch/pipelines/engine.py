"""The DAG engine: one step of a run from what is recorded toward what the IR says should happen.

A run's progress is nothing but ``status.tasks``: one record per task instance, keyed by its path in the
DAG (``for-loop-2[1]/square``). ``Engine.step`` walks the IR from the root, creates records for tasks whose
upstreams are done, evaluates conditions, expands loops, resolves inputs, asks the ``Runner`` to start a Pod
for each ready container task, and folds Pod results back into records. It keeps no other state, so the
controller can call it after a restart and carry on where the records say the run is.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from ketch.pipelines import ir

TERMINAL = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"}
_PH = re.compile(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}")


class Runner(Protocol):
    """What the engine needs from the outside world (the controller implements it with Pods)."""

    def pod_phase(self, rec: dict) -> str: ...  # Pending|Running|Succeeded|Failed|Missing
    def start(self, rec: dict, task: dict) -> str: ...  # returns the Pod name
    def stop(self, rec: dict) -> None: ...
    def result(self, rec: dict) -> dict | None: ...
    def cache_get(self, key: str) -> dict | None: ...
    def cache_put(self, key: str, outputs: dict) -> None: ...
    def note(self, msg: str) -> None: ...
    def create_pvc(self, name: str, spec: dict, annotations: dict) -> None: ...  # idempotent
    def delete_pvc(self, name: str) -> None: ...
    def pvc_exists(self, name: str) -> bool: ...


@dataclass
class RunInfo:
    run_id: str
    run_name: str
    display_name: str
    pipeline_root: str  # URI prefix for artifacts
    task_root: str  # local directory for task files
    create_time: str
    schedule_time: str
    enable_caching: bool | None = None  # None: as the IR says


def now_iso(ts: float | None = None) -> str:
    t = ts if ts is not None else time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def slug(tid: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", tid.replace("[", ".").replace("]", "")).strip("-") or "task"


def _dur(s: str | None) -> float:
    if not s:
        return 0.0
    m = re.fullmatch(r"([\d.]+)(ms|s|m|h)?", str(s).strip())
    if not m:
        return 0.0
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def eval_condition(cond: str, params: dict) -> bool:
    """The CEL subset the KFP compiler emits, evaluated as Python over the task's resolved inputs."""
    expr = cond.replace("&&", " and ").replace("||", " or ")
    expr = re.sub(r"!(?!=)", " not ", expr)
    expr = re.sub(r"\btrue\b", "True", expr)
    expr = re.sub(r"\bfalse\b", "False", expr)
    expr = re.sub(r"\bnull\b", "None", expr)

    class _In:
        parameter_values = params

    env = {"inputs": _In, "int": lambda v: int(float(v)), "double": float, "string": str, "bool": bool, "True": True, "False": False, "None": None}
    return bool(eval(expr, {"__builtins__": {}}, env))  # noqa: S307 - validated subset, no builtins


class Engine:
    def __init__(self, p: ir.Pipeline, info: RunInfo, tasks: dict, params: dict, runner: Runner, cancel: bool = False,
                 suspend: bool = False) -> None:
        self.p = p
        self.info = info
        self.tasks = tasks
        self.params = params
        self.runner = runner
        self.cancel = cancel
        # Paused (spec.suspend): nothing new starts (tasks, retries, loop iterations); what runs finishes.
        self.hold = cancel or suspend
        self.wake: float | None = None  # seconds until a timed event (retry backoff, timeout)
        self.changed = False

    # -- entry ----------------------------------------------------------------------------------------------

    def step(self) -> tuple[str, dict]:
        """Advance; return the run state (RUNNING, PAUSED, SUCCEEDED, FAILED, CANCELED) and the pipeline outputs."""
        root = self.p.root
        params = self._defaults(root, dict(self.params))
        try:
            arts = ir.root_artifacts(self.p, self.params)
        except ir.IRError as e:
            raise KeyError(str(e)) from e
        for v in arts.values():
            for a in v:
                a["id"] = artifact_id(a["uri"])
        done = self._dag(root, "", params, arts)
        if self.cancel:
            busy = []
            for r in self.tasks.values():
                if r["kind"] == "container" and r["state"] not in TERMINAL and r.get("pod"):
                    if self.runner.pod_phase(r) in ("Pending", "Running"):
                        self.runner.stop(r)  # the kubelet ends the process; the Pod goes when it has
                        busy.append(r)
                        self._wake(0.5)
                    else:
                        self._set(r, "CANCELED", "run terminated")
            for r in self.tasks.values():
                if r["state"] not in TERMINAL and not (r["kind"] == "container" and r.get("pod")):
                    self._set(r, "CANCELED")
            return ("CANCELING" if busy else "CANCELED"), {}
        if not done:
            return ("PAUSED" if self.hold else "RUNNING"), {}
        state = self._dag_state("", root)
        outputs = self._dag_outputs(root, "")
        return state, outputs

    # -- DAGs ------------------------------------------------------------------------------------------------

    def _children(self, scope: str, comp: dict) -> list[tuple[str, str, dict]]:
        tasks = (comp.get("dag") or {}).get("tasks") or {}
        return [(f"{scope}/{n}" if scope else n, n, t) for n, t in _topo(tasks)]

    def _dag_state(self, scope: str, comp: dict) -> str:
        states = [self.tasks[tid]["state"] for tid, _, _ in self._children(scope, comp) if tid in self.tasks]
        if "FAILED" in states:
            return "FAILED"
        if "CANCELED" in states:
            return "CANCELED"
        return "SUCCEEDED"

    def _dag(self, comp: dict, scope: str, params: dict, arts: dict) -> bool:
        """Step every task of one DAG instance; True when all of them are finished."""
        all_done = True
        for tid, tname, t in self._children(scope, comp):
            rec = self.tasks.get(tid)
            if rec is None:
                rec = self._create(tid, tname, t, scope, params, arts)
                if rec is None:
                    all_done = False
                    continue
            if rec["state"] not in TERMINAL:
                self._progress(rec, t)
            if rec["state"] not in TERMINAL:
                all_done = False
        return all_done

    def _create(self, tid: str, tname: str, t: dict, scope: str, params: dict, arts: dict) -> dict | None:
        siblings = {n: self.tasks.get(f"{scope}/{n}" if scope else n) for n in t.get("dependentTasks") or []}
        if any(r is None or r["state"] not in TERMINAL for r in siblings.values()):
            return None
        if self.hold:
            return None
        comp = self.p.component(t["componentRef"]["name"])
        kind = "dag" if "dag" in comp else "container"
        if "parameterIterator" in t or "artifactIterator" in t:
            kind = "loop"
        elif kind == "container" and "importer" in self.p.executor(comp["executorLabel"]):
            kind = "importer"
        elif kind == "container":
            kind = ir.PLATFORM_OPS.get(str(self.p.executor(comp["executorLabel"]).get("container", {}).get("image", "")), kind)
        rec = {
            "id": tid, "name": tname, "displayName": (t.get("taskInfo") or {}).get("name", tname), "kind": kind,
            "parent": scope, "component": t["componentRef"]["name"], "state": "PENDING", "createTime": now_iso(),
            "inputs": {"parameters": {}, "artifacts": {}}, "outputs": {"parameters": {}, "artifacts": {}}, "attempt": 0,
        }
        self.tasks[tid] = rec
        self.changed = True
        strategy = (t.get("triggerPolicy") or {}).get("strategy") or "ALL_UPSTREAM_TASKS_SUCCEEDED"
        bad = [n for n, r in siblings.items() if r and r["state"] in ("FAILED", "CANCELED")]
        if bad and strategy != "ALL_UPSTREAM_TASKS_COMPLETED":
            self._set(rec, "SKIPPED", f"upstream task {bad[0]!r} did not succeed")
            rec["upstreamFailed"] = True
            return rec
        try:
            p_in, a_in = self._resolve_inputs(t, comp, scope, params, arts)
        except KeyError as e:
            self._set(rec, "FAILED", f"task {tname!r}: {e.args[0]}")
            return rec
        rec["inputs"] = {"parameters": p_in, "artifacts": a_in}
        if kind == "container":
            plat = self.p.platform_executor(comp["executorLabel"])
            if _has_refs(plat):  # names that come from pipeline inputs or upstream outputs (a CreatePVC's name)
                try:
                    rec["platform"] = self._resolve_platform(plat, scope, params)
                except KeyError as e:
                    self._set(rec, "FAILED", f"task {tname!r}: kubernetes option refers to {e.args[0]}, which has no value")
                    return rec
        cond = (t.get("triggerPolicy") or {}).get("condition")
        if cond:
            try:
                ok = eval_condition(cond, p_in)
            except Exception as e:  # a condition that cannot be evaluated is an error, not a silent skip
                self._set(rec, "FAILED", f"task {tname!r}: cannot evaluate condition {cond!r}: {e}")
                return rec
            if not ok:
                self._set(rec, "SKIPPED", "condition is false")
                return rec
        return rec

    # -- inputs ----------------------------------------------------------------------------------------------

    def _resolve_platform(self, node: Any, scope: str, params: dict) -> Any:
        """The kfp-kubernetes options of one task with every parameter reference replaced by its value."""
        if isinstance(node, list):
            return [self._resolve_platform(x, scope, params) for x in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k.endswith("Parameter") and isinstance(v, dict) and _REFS & set(v):
                out[k] = {"runtimeValue": {"constant": self._ref(v, scope, params)}}
            elif k in _REFS:  # the older form: the reference beside the field, meaning its constant
                out["constant"] = self._ref({k: v}, scope, params)
            else:
                out[k] = self._resolve_platform(v, scope, params)
        return out

    def _ref(self, ref: dict, scope: str, params: dict) -> Any:
        if "componentInputParameter" in ref:
            key = ref["componentInputParameter"]
            if key not in params:
                raise KeyError(f"pipeline input {key!r}")
            return params[key]
        top = ref["taskOutputParameter"]
        prod = self.tasks.get(f"{scope}/{top['producerTask']}" if scope else top["producerTask"]) or {}
        outs = (prod.get("outputs") or {}).get("parameters") or {}
        if top["outputParameterKey"] not in outs:
            raise KeyError(f"output {top['outputParameterKey']!r} of task {top['producerTask']!r}")
        return outs[top["outputParameterKey"]]

    def _resolve_inputs(self, t: dict, comp: dict, scope: str, params: dict, arts: dict) -> tuple[dict, dict]:
        spec_in = t.get("inputs") or {}
        out: dict[str, Any] = {}
        consts: dict[str, Any] = {}
        for name, src in (spec_in.get("parameters") or {}).items():
            if "componentInputParameter" in src:
                key = src["componentInputParameter"]
                if key in params:
                    out[name] = params[key]
            elif "taskOutputParameter" in src:
                top = src["taskOutputParameter"]
                prod = self.tasks.get(f"{scope}/{top['producerTask']}" if scope else top["producerTask"])
                if prod is not None and top["outputParameterKey"] in prod["outputs"]["parameters"]:
                    out[name] = prod["outputs"]["parameters"][top["outputParameterKey"]]
            elif "runtimeValue" in src:
                consts[name] = (src["runtimeValue"] or {}).get("constant")
            elif "taskFinalStatus" in src:
                pt = src["taskFinalStatus"]["producerTask"]
                prod = self.tasks.get(f"{scope}/{pt}" if scope else pt) or {}
                # states as KFP's backend reports them (ML Metadata execution states)
                mlmd = {"SUCCEEDED": "COMPLETE", "SKIPPED": "COMPLETE", "FAILED": "FAILED", "CANCELED": "CANCELED"}
                st = {"state": mlmd.get(prod.get("state", "FAILED"), "FAILED"), "pipelineJobResourceName": self.info.run_name, "pipelineTaskName": pt}
                st["error"] = {"code": 1, "message": prod.get("error") or f"Task {pt} failed."} if prod.get("state") == "FAILED" else {}
                out[name] = st
            sel = src.get("parameterExpressionSelector")
            if sel and name in out:
                out[name] = ir.apply_selector(out[name], sel)
        for name, c in consts.items():
            out[name] = self._placeholders(c, out, t)
        a_out: dict[str, list] = {}
        for name, src in (spec_in.get("artifacts") or {}).items():
            if "componentInputArtifact" in src:
                if src["componentInputArtifact"] in arts:
                    a_out[name] = arts[src["componentInputArtifact"]]
            elif "taskOutputArtifact" in src:
                toa = src["taskOutputArtifact"]
                prod = self.tasks.get(f"{scope}/{toa['producerTask']}" if scope else toa["producerTask"])
                if prod is not None and toa["outputArtifactKey"] in prod["outputs"]["artifacts"]:
                    a_out[name] = prod["outputs"]["artifacts"][toa["outputArtifactKey"]]
        skip = {(t.get("parameterIterator") or t.get("artifactIterator") or {}).get("itemInput")}
        out = self._defaults(comp, out, skip)
        for name, d in ((comp.get("inputDefinitions") or {}).get("artifacts") or {}).items():
            if name not in a_out and not d.get("isOptional") and "parameterIterator" not in t and "artifactIterator" not in t:
                raise KeyError(f"required input artifact {name!r} has no value (its producer did not run or produced nothing)")
        return out, a_out

    def _defaults(self, comp: dict, values: dict, skip: set | None = None) -> dict:
        for name, d in ((comp.get("inputDefinitions") or {}).get("parameters") or {}).items():
            if skip and name in skip:
                continue
            if name not in values:
                if "defaultValue" in d:
                    values[name] = d["defaultValue"]
                elif d.get("parameterType") == "TASK_FINAL_STATUS":
                    # a final-status input nobody feeds (the component run on its own): an empty status
                    values[name] = {"state": "", "pipelineJobResourceName": self.info.run_name, "pipelineTaskName": "", "error": {}}
                elif not d.get("isOptional") and d.get("parameterType") != "TASK_CONFIG":
                    raise KeyError(f"required input parameter {name!r} has no value")
            if name in values:
                values[name] = ir.cast_param(values[name], d.get("parameterType"))
        return values

    def _placeholders(self, v: Any, inputs: dict, t: dict) -> Any:
        if not isinstance(v, str) or "{{" not in v:
            return v
        i = self.info
        tname = (t.get("taskInfo") or {}).get("name", "")
        rep = {
            "{{$.pipeline_job_name}}": i.run_name, "{{$.pipeline_job_resource_name}}": i.run_name,
            "{{$.pipeline_job_uuid}}": i.run_id, "{{$.pipeline_task_name}}": tname,
            "{{$.pipeline_task_uuid}}": hashlib.sha1(f"{i.run_id}/{tname}".encode()).hexdigest()[:16],
            "{{$.pipeline_root}}": i.pipeline_root, "{{$.pipeline_job_create_time_utc}}": i.create_time,
            "{{$.pipeline_job_schedule_time_utc}}": i.schedule_time,
        }
        if v in rep:
            return rep[v]
        for k, r in rep.items():
            v = v.replace(k, r)
        return _PH.sub(lambda m: _fmt(inputs.get(m.group(1), "")), v)

    # -- progress of one record ------------------------------------------------------------------------------

    def _set(self, rec: dict, state: str, error: str | None = None) -> None:
        if rec["state"] == state and not error:
            return
        rec["state"] = state
        if error:
            rec["error"] = error
        if state == "RUNNING" and "startTime" not in rec:
            rec["startTime"] = now_iso()
        if state in TERMINAL:
            rec.setdefault("startTime", now_iso())
            rec["endTime"] = now_iso()
        self.changed = True

    def _progress(self, rec: dict, t: dict) -> None:
        comp = self.p.component(rec["component"])
        kind = rec["kind"]
        if kind == "importer":
            self._importer(rec, comp)
        elif kind in ("createpvc", "deletepvc"):
            self._pvc(rec, kind)
        elif kind == "container":
            self._container(rec, t, comp)
        elif kind == "dag":
            self._set(rec, "RUNNING")
            p_in, a_in = rec["inputs"]["parameters"], rec["inputs"]["artifacts"]
            if self._dag(comp, rec["id"], p_in, a_in):
                rec["outputs"] = self._dag_outputs(comp, rec["id"])
                self._set(rec, self._dag_state(rec["id"], comp))
        elif kind == "loop":
            self._loop(rec, t, comp)

    def _importer(self, rec: dict, comp: dict) -> None:
        spec = self.p.executor(comp["executorLabel"])["importer"]
        params = rec["inputs"]["parameters"]
        src = spec.get("artifactUri") or {}
        uri = src.get("constant") if "constant" in src else params.get(src.get("runtimeParameter", "uri"))
        if uri is None:
            uri = params.get("uri")
        md = _resolve_struct(spec.get("metadata") or {}, params)
        out_name = next(iter((comp.get("outputDefinitions") or {}).get("artifacts") or {"artifact": {}}))
        art = {"name": out_name, "type": spec.get("typeSchema") or {"schemaTitle": "system.Artifact"}, "uri": uri, "metadata": md}
        art["id"] = artifact_id(uri)
        rec["outputs"] = {"parameters": {}, "artifacts": {out_name: [art]}}
        self._set(rec, "SUCCEEDED")

    def _pvc(self, rec: dict, kind: str) -> None:
        """kfp-kubernetes CreatePVC / DeletePVC, done by the run controller itself as KFP's driver does."""
        p = rec["inputs"]["parameters"]
        try:
            if kind == "deletepvc":
                # Two steps, so a restart between deleting and recording it cannot turn into "not found":
                # first check the claim exists and record the intent, then delete (absent then means done).
                if not rec.get("deleting"):
                    if not self.runner.pvc_exists(str(p["pvc_name"])):
                        raise ValueError(f'persistentvolumeclaim "{p["pvc_name"]}" not found')
                    rec["deleting"] = True
                    self._set(rec, "RUNNING")
                    self._wake(0)
                    return
                self.runner.delete_pvc(str(p["pvc_name"]))
                self._set(rec, "SUCCEEDED")
                return
            name, suffix = p.get("pvc_name"), p.get("pvc_name_suffix")
            if bool(name) == bool(suffix):
                raise ValueError("exactly one of pvc_name and pvc_name_suffix must be given")
            if not name:
                # KFP names it <uuid><suffix>; derived from the run and task so a retried step makes the same claim
                name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.info.run_id}/{rec['id']}")) + str(suffix)
            spec: dict[str, Any] = {"accessModes": list(p.get("access_modes") or []), "resources": {"requests": {"storage": str(p.get("size") or "")}}}
            if not spec["accessModes"]:
                raise ValueError("access_modes must name at least one access mode")
            if not p.get("size"):
                raise ValueError("size is required (for example '5Gi')")
            if p.get("storage_class_name"):
                spec["storageClassName"] = p["storage_class_name"]
            if p.get("volume_name"):
                spec["volumeName"] = p["volume_name"]
            if p.get("data_source"):
                spec["dataSource"] = p["data_source"]
            self.runner.create_pvc(name, spec, dict(p.get("annotations") or {}))
        except (KeyError, ValueError, RuntimeError) as e:
            self._set(rec, "FAILED", f"task {rec['name']!r} ({kind}): {e.args[0] if e.args else e}")
            return
        rec["outputs"] = {"parameters": {"name": name}, "artifacts": {}}
        self._set(rec, "SUCCEEDED")

    def _container(self, rec: dict, t: dict, comp: dict) -> None:
        label = comp["executorLabel"]
        ex = self.p.executor(label)["container"]
        now = time.time()
        if rec.get("pod"):
            timeout = (rec.get("timeoutSeconds") or 0)
            phase = self.runner.pod_phase(rec)
            if phase in ("Pending", "Running"):
                if timeout and rec.get("podStart") and now - rec["podStart"] > timeout:
                    self.runner.stop(rec)
                    self._fail_attempt(rec, t, f"task {rec['name']!r} timed out after {timeout}s")
                elif timeout and rec.get("podStart"):
                    self._wake(rec["podStart"] + timeout - now)
                return
            res = self.runner.result(rec) if phase in ("Succeeded", "Failed") else None
            # The launcher's result file is the authority: a Pod can end Failed with an unknown exit status
            # (a process adopted by a restarted kubelet) after the task finished well.
            if res is not None and not res.get("error"):
                rec["outputs"] = {"parameters": res.get("parameters") or {}, "artifacts": res.get("artifacts") or {}}
                if rec.get("cacheKey"):
                    self.runner.cache_put(rec["cacheKey"], rec["outputs"])
                self._set(rec, "SUCCEEDED")
                return
            why = (res or {}).get("error") or ("the task's Pod disappeared" if phase == "Missing" else f"the task's Pod ended {phase} without a result")
            self._fail_attempt(rec, t, why)
            return
        if self.hold:
            return
        if rec.get("nextAttemptAt") and rec["nextAttemptAt"] > now:
            self._wake(rec["nextAttemptAt"] - now)
            return
        task = self._task_file(rec, t, comp, label, ex)
        if rec["attempt"] == 0 and "cacheKey" not in rec:
            key = self._cache_key(rec, t, comp, ex, task)
            if key:
                rec["cacheKey"] = key
                hit = self.runner.cache_get(key)
                if hit is not None:
                    rec["outputs"] = hit
                    rec["cached"] = True
                    self._set(rec, "SKIPPED")
                    return
        task["retries"] = rec["attempt"]  # Argo's {{retries}}: 0 on the first attempt, 1 on the first retry
        rec["attempt"] += 1
        rec.pop("nextAttemptAt", None)
        rec["pod"] = self.runner.start(rec, task)
        rec["podStart"] = now
        self._set(rec, "RUNNING")
        self.changed = True  # a retry starts while the task is RUNNING already: its new Pod must be recorded

    def _fail_attempt(self, rec: dict, t: dict, why: str) -> None:
        rp = t.get("retryPolicy") or {}
        retries = int(rp.get("maxRetryCount") or 0)
        rec.setdefault("failedPods", []).append(rec.pop("pod"))
        rec.pop("podStart", None)
        rec["error"] = why
        self.changed = True
        if rec["attempt"] <= retries:
            backoff = _dur(rp.get("backoffDuration")) * (float(rp.get("backoffFactor") or 2.0) ** (rec["attempt"] - 1))
            cap = _dur(rp.get("backoffMaxDuration")) or 3600.0
            delay = min(backoff, cap)
            rec["nextAttemptAt"] = time.time() + delay
            self._wake(delay)
            return
        self._set(rec, "FAILED", why)

    def _wake(self, delay: float) -> None:
        delay = max(delay, 0.05)
        self.wake = delay if self.wake is None else min(self.wake, delay)

    def _task_file(self, rec: dict, t: dict, comp: dict, label: str, ex: dict) -> dict:
        """What the launcher in the Pod needs: the ExecutorInput with pre-allocated output URIs, the command."""
        i = self.info
        s = slug(rec["id"])
        tdir = f"{i.task_root}/{s}"
        defs_in = comp.get("inputDefinitions") or {}
        declared = set(defs_in.get("parameters") or {})
        params = {k: v for k, v in rec["inputs"]["parameters"].items() if k in declared}
        in_arts = {}
        for k, v in rec["inputs"]["artifacts"].items():
            in_arts[k] = {"artifacts": [{kk: vv for kk, vv in a.items() if kk != "id"} for a in v]}
        out_params = {}
        types = {}
        for n, d in ((comp.get("outputDefinitions") or {}).get("parameters") or {}).items():
            out_params[n] = {"outputFile": f"{tdir}/outputs/{n}"}
            types[n] = d.get("parameterType")
        out_arts = {}
        for n, d in ((comp.get("outputDefinitions") or {}).get("artifacts") or {}).items():
            uri = f"{i.pipeline_root.rstrip('/')}/{i.run_id}/{s}/{n}"
            out_arts[n] = {"artifacts": [{"name": n, "type": d.get("artifactType") or {}, "uri": uri, "metadata": {}}]}
        executor_input = {
            "inputs": {"parameterValues": params, "artifacts": in_arts},
            "outputs": {"parameters": out_params, "artifacts": out_arts, "outputFile": f"{tdir}/executor_output.json"},
        }
        plat = rec.get("platform") or self.p.platform_executor(label)
        timeout = plat.get("activeDeadlineSeconds")
        if timeout:
            rec["timeoutSeconds"] = int(timeout)
        return {
            "taskDir": tdir, "executorInput": executor_input, "image": self._placeholders(ex.get("image", ""), rec["inputs"]["parameters"], t),
            "command": ex.get("command") or [], "args": ex.get("args") or [], "env": ex.get("env") or [],
            "resources": ex.get("resources") or {}, "outputParameterTypes": types, "platform": plat,
            "allInputs": rec["inputs"]["parameters"],
        }

    def _cache_key(self, rec: dict, t: dict, comp: dict, ex: dict, task: dict) -> str | None:
        opt = t.get("cachingOptions") or {}
        enabled = bool(opt.get("enableCache"))
        if self.info.enable_caching is not None:
            enabled = self.info.enable_caching
        if not enabled:
            return None
        if opt.get("cacheKey"):
            basis: Any = {"component": rec["component"], "cacheKey": opt["cacheKey"]}
        else:
            arts = {k: [{"uri": a.get("uri"), "metadata": a.get("metadata")} for a in v] for k, v in rec["inputs"]["artifacts"].items()}
            basis = {
                "inputs": task["executorInput"]["inputs"]["parameterValues"], "artifacts": arts,
                "outputs": comp.get("outputDefinitions") or {}, "image": ex.get("image"), "command": ex.get("command"), "args": ex.get("args"),
                "env": ex.get("env"),
            }
        return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()

    # -- loops -----------------------------------------------------------------------------------------------

    def _loop(self, rec: dict, t: dict, comp: dict) -> None:
        self._set(rec, "RUNNING")
        p_in, a_in = rec["inputs"]["parameters"], rec["inputs"]["artifacts"]
        if "items" not in rec:
            if "parameterIterator" in t:
                it = t["parameterIterator"]
                src = it.get("items") or {}
                if "raw" in src:
                    items = json.loads(src["raw"]) if isinstance(src["raw"], str) else src["raw"]
                else:
                    items = p_in.get(src.get("inputParameter"))
                    if isinstance(items, str):
                        items = json.loads(items)
                if not isinstance(items, list):
                    self._set(rec, "FAILED", f"task {rec['name']!r}: ParallelFor items are not a list: {items!r}")
                    return
                rec["items"] = items
            else:
                it = t["artifactIterator"]
                rec["items"] = list(range(len(a_in.get(it["items"]["inputArtifact"]) or [])))
            rec["iterations"] = len(rec["items"])
            self.changed = True
        limit = int((t.get("iteratorPolicy") or {}).get("parallelismLimit") or 0)
        active = 0
        all_done = True
        for idx, item in enumerate(rec["items"]):
            iid = f"{rec['id']}[{idx}]"
            irec = self.tasks.get(iid)
            if irec is None:
                if self.hold or (limit and active >= limit):
                    all_done = False
                    continue
                params, arts = dict(p_in), dict(a_in)
                if "parameterIterator" in t:
                    params[t["parameterIterator"]["itemInput"]] = item
                else:
                    it = t["artifactIterator"]
                    arts[it["itemInput"]] = [a_in[it["items"]["inputArtifact"]][item]]
                irec = {"id": iid, "name": f"{rec['name']}-iteration-{idx}", "displayName": f"{rec['displayName']} #{idx}", "kind": "iteration",
                        "parent": rec["id"], "component": rec["component"], "state": "RUNNING", "createTime": now_iso(), "startTime": now_iso(),
                        "inputs": {"parameters": params, "artifacts": arts}, "outputs": {"parameters": {}, "artifacts": {}}, "attempt": 0, "index": idx}
                self.tasks[iid] = irec
                self.changed = True
            if irec["state"] not in TERMINAL:
                if self._dag(comp, iid, irec["inputs"]["parameters"], irec["inputs"]["artifacts"]):
                    irec["outputs"] = self._dag_outputs(comp, iid, raw=True)
                    self._set(irec, self._dag_state(iid, comp))
            if irec["state"] not in TERMINAL:
                active += 1
                all_done = False
        if all_done:
            iters = [self.tasks[f"{rec['id']}[{i}]"] for i in range(len(rec["items"]))]
            outs: dict = {"parameters": {}, "artifacts": {}}
            for n, _d in ((comp.get("outputDefinitions") or {}).get("parameters") or {}).items():
                outs["parameters"][n] = [r["outputs"]["parameters"][n] for r in iters if n in r["outputs"]["parameters"]]
            for n in ((comp.get("outputDefinitions") or {}).get("artifacts") or {}):
                outs["artifacts"][n] = [a for r in iters for a in r["outputs"]["artifacts"].get(n, [])]
            rec["outputs"] = outs
            states = {r["state"] for r in iters}
            self._set(rec, "FAILED" if "FAILED" in states else "CANCELED" if "CANCELED" in states else "SUCCEEDED")

    def _dag_outputs(self, comp: dict, scope: str, raw: bool = False) -> dict:
        """A DAG's outputs from its tasks; ``raw`` for one loop iteration, whose declared types are the
        loop's (LIST) rather than the value's."""
        outs: dict = {"parameters": {}, "artifacts": {}}
        dag_out = (comp.get("dag") or {}).get("outputs") or {}
        types = {n: d.get("parameterType") for n, d in ((comp.get("outputDefinitions") or {}).get("parameters") or {}).items()}

        def get(sub: str) -> dict | None:
            return self.tasks.get(f"{scope}/{sub}" if scope else sub)

        for n, spec in (dag_out.get("parameters") or {}).items():
            sels = [spec["valueFromParameter"]] if "valueFromParameter" in spec else ((spec.get("valueFromOneof") or {}).get("parameterSelectors") or [])
            for s in sels:
                r = get(s["producerSubtask"])
                if r is not None and s["outputParameterKey"] in r["outputs"]["parameters"]:
                    v = r["outputs"]["parameters"][s["outputParameterKey"]]
                    outs["parameters"][n] = v if raw or (types.get(n) == "LIST" and isinstance(v, list)) else ir.cast_param(v, types.get(n))
                    break
        for n, spec in (dag_out.get("artifacts") or {}).items():
            for s in spec.get("artifactSelectors") or []:
                r = get(s["producerSubtask"])
                if r is not None and s["outputArtifactKey"] in r["outputs"]["artifacts"]:
                    outs["artifacts"][n] = r["outputs"]["artifacts"][s["outputArtifactKey"]]
                    break
        return outs


def artifact_id(uri: str) -> str:
    return hashlib.sha1(str(uri).encode()).hexdigest()[:16]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)


_REFS = {"componentInputParameter", "taskOutputParameter"}


def _has_refs(node: Any) -> bool:
    if isinstance(node, dict):
        return bool(_REFS & set(node)) or any(_has_refs(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_refs(v) for v in node)
    return False


def _resolve_struct(v: Any, params: dict) -> Any:
    if isinstance(v, dict):
        return {_resolve_struct(k, params): _resolve_struct(x, params) for k, x in v.items()}
    if isinstance(v, list):
        return [_resolve_struct(x, params) for x in v]
    if isinstance(v, str):
        m = _PH.fullmatch(v)
        if m:
            return params.get(m.group(1))
        return _PH.sub(lambda m: _fmt(params.get(m.group(1), "")), v)
    return v


_topo_cache: dict[int, list] = {}


def _topo(tasks: dict) -> list[tuple[str, dict]]:
    """Tasks in dependency order (stable in declaration order), so one step can run a chain of instant tasks."""
    key = id(tasks)
    hit = _topo_cache.get(key)
    if hit is not None and hit[0] is tasks:
        return hit[1]
    order: list[str] = []
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n in seen:
            return
        seen.add(n)
        for d in tasks[n].get("dependentTasks") or []:
            if d in tasks:
                visit(d)
        order.append(n)

    for n in tasks:
        visit(n)
    res = [(n, tasks[n]) for n in order]
    if len(_topo_cache) > 2000:
        _topo_cache.clear()
    _topo_cache[key] = [tasks, res]
    return res


def task_progress(p: ir.Pipeline, tasks: dict) -> tuple[int, int]:
    """(leaf tasks finished, leaf tasks the run is expected to have): what a progress bar shows.

    The engine creates a task only once its upstream tasks have finished, so counting the records alone
    would give "1/1" for the first task of a five-task chain. The total adds, for every task not created
    yet, how many leaf tasks its component holds (a loop's body counted once until its items are known);
    a DAG, loop or iteration that has finished (or was skipped by its condition) adds only what it
    created, since nothing more will run under it.
    """
    done = sum(1 for r in tasks.values() if r["kind"] in ir.LEAF_KINDS and r["state"] in TERMINAL)
    return done, max(done, _planned(p, tasks, "", p.root, closed=False))


def _planned(p: ir.Pipeline, tasks: dict, scope: str, comp: dict, closed: bool) -> int:
    n = 0
    for name, t in ((comp.get("dag") or {}).get("tasks") or {}).items():
        tid = f"{scope}/{name}" if scope else name
        sub = p.component(t["componentRef"]["name"])
        rec = tasks.get(tid)
        if rec is None:
            n += 0 if closed else _static_leaves(p, sub)
        elif rec["kind"] in ir.LEAF_KINDS:
            n += 1
        elif rec["kind"] == "dag":
            n += _planned(p, tasks, tid, sub, closed or rec["state"] in TERMINAL)
        elif rec["kind"] == "loop":
            shut = closed or rec["state"] in TERMINAL
            if "items" not in rec:
                n += 0 if shut else _static_leaves(p, sub)
                continue
            for i in range(len(rec["items"])):
                it = tasks.get(f"{tid}[{i}]")
                if it is not None:
                    n += _planned(p, tasks, it["id"], sub, shut or it["state"] in TERMINAL)
                elif not shut:
                    n += _static_leaves(p, sub)
    return n


def _static_leaves(p: ir.Pipeline, comp: dict) -> int:
    """Leaf tasks one instance of a component runs when every task of it runs (1 for a container)."""
    if "dag" not in comp:
        return 1
    return sum(_static_leaves(p, p.component(t["componentRef"]["name"])) for t in (comp["dag"].get("tasks") or {}).values())
