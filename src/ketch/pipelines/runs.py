"""The PipelineRun controller: each reconcile steps a run's DAG with the engine and makes one Pod per task.

The run object is the whole truth: ``spec`` holds the compiled IR and the run's parameters, ``status.tasks``
what happened so far. Task Pods are owned by the run (deleted with it) and run
``python -m ketch.pipelines.launcher <task.json>``; their result file is read when the Pod ends.
A run found mid-way after a restart simply continues: Pods that finished while ketch was down are read,
Pods that vanished count as a failed attempt (retried if the task allows, else the run fails).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from pathlib import Path

from ketch import storage
from ketch.kinds.meta import owner_reference
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError
from ketch.pipelines import engine, ir
from ketch.runtime import Controller, Key, Result

log = logging.getLogger(__name__)
RUN = ("pipelines.kubeflow.org/v1", "PipelineRun")
POD = ("v1", "Pod")
PVC = ("v1", "PersistentVolumeClaim")
FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}
LABEL_RUN = "pipelines.kubeflow.org/run"
LABEL_TASK = "pipelines.kubeflow.org/task"
PRELOAD = "kubelet.ketch.dev/preload"  # the kubelet's warm-start hint (docs/kubelet.md)


def artifact_root(home: Path) -> str:
    """Default pipeline root: KETCH_PIPELINE_ROOT (any fsspec URL), else ``<KETCH_ARTIFACTS>/pipelines``, else a
    directory under the home."""
    from ketch.config import Settings

    return Settings(home=home).artifact_root


class PodRunner:
    """The engine's view of the world, made of Pods in the run's namespace and files under the home."""

    def __init__(self, ctrl: RunController, run: dict, info: engine.RunInfo) -> None:
        self.c = ctrl
        self.run = run
        self.info = info
        self.ns = run["metadata"]["namespace"]
        self.pods = {p["metadata"]["name"]: p for p in ctrl.owned(POD, run)}

    def pod_phase(self, rec: dict) -> str:
        p = self.pods.get(rec["pod"])
        if p is None:
            p = self.c.client.get(POD, self.ns, rec["pod"])
        if p is None:
            # a result with no Pod: the Pod was refused at admission (see start), or ended and was deleted
            return "Failed" if self.result(rec) is not None else "Missing"
        return (p.get("status") or {}).get("phase") or "Pending"

    def start(self, rec: dict, task: dict) -> str:
        run = self.run
        tdir = Path(task["taskDir"])
        tdir.mkdir(parents=True, exist_ok=True)
        task.update(runName=self.info.run_name, runId=self.info.run_id, taskName=rec["name"], pipelineRoot=self.info.pipeline_root)
        task["envs"] = task_envs(self.c.home)
        task_file = tdir / f"task-{rec['attempt']}.json"
        task_file.write_text(json.dumps(task))
        (tdir / "result.json").unlink(missing_ok=True)
        retry = int((run.get("status") or {}).get("retryCount") or 0)
        name = pod_name(run["metadata"]["name"], rec["id"], f"{rec['attempt']}" if not retry else f"r{retry}-{rec['attempt']}")
        pod = build_pod(run, rec, task, name, str(task_file), self.c.store_env(self.ns, self.info.pipeline_root))
        try:
            self.c.client.create(pod, self.ns)
        except StatusError as e:
            if e.code in (403, 422):
                # refused at admission (a Profile's ResourceQuota, say): the attempt fails with the API's
                # words, as a Pod that never started, rather than the run retrying the create forever
                (tdir / "result.json").write_text(json.dumps({"error": f"the task's Pod was refused: {e.message}"}))
                self.c.queue.add_after(Key(self.ns, run["metadata"]["name"]), 0.05)
                return name
            if e.code != 409:
                raise
            # made by a pass whose record was lost (ketch killed before writing it): it may have ended
            # already, and its end will not be an event again, so look at it on the next pass
            self.c.queue.add_after(Key(self.ns, run["metadata"]["name"]), 0.05)
        return name

    def stop(self, rec: dict) -> None:
        if rec.get("pod"):
            p = self.pods.get(rec["pod"]) or {}
            if not p.get("metadata", {}).get("deletionTimestamp"):
                self.c.client.delete(POD, self.ns, rec["pod"], grace=2)

    def result(self, rec: dict) -> dict | None:
        p = Path(self.info.task_root) / engine.slug(rec["id"]) / "result.json"
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def cache_get(self, key: str) -> dict | None:
        p = self.c.home / "pipelines" / "cache" / f"{key}.json"
        try:
            outs = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        for arts in outs.get("artifacts", {}).values():
            for a in arts:
                uri = a.get("uri") or ""
                if uri.startswith("/") and not os.path.exists(uri) and not (a.get("type") or {}).get("schemaTitle", "").endswith("Metrics"):
                    return None  # the cached artifact is gone: run again
        return outs

    def cache_put(self, key: str, outputs: dict) -> None:
        d = self.c.home / "pipelines" / "cache"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{key}.json").write_text(json.dumps(outputs))

    def note(self, msg: str) -> None:
        log.info("%s: %s", self.run["metadata"]["name"], msg)

    def create_pvc(self, name: str, spec: dict, annotations: dict) -> None:
        pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": self.ns}, "spec": spec}
        if annotations:
            pvc["metadata"]["annotations"] = annotations
        try:
            self.c.client.create(pvc, self.ns)
        except StatusError as e:
            if e.code != 409:  # made by an earlier step of this task that did not get to record it
                raise RuntimeError(e.message) from e

    def delete_pvc(self, name: str) -> None:
        try:
            self.c.client.delete(PVC, self.ns, name)
        except StatusError as e:
            raise RuntimeError(e.message) from e

    def pvc_exists(self, name: str) -> bool:
        return self.c.client.get(PVC, self.ns, name) is not None


def pod_name(run_name: str, tid: str, attempt: int | str) -> str:
    import hashlib

    h = hashlib.sha1(tid.encode()).hexdigest()[:6]
    s = re.sub(r"[^a-z0-9-]+", "-", engine.slug(tid).lower()).strip("-")[:30].strip("-")
    return f"{run_name[:20].rstrip('-')}-{s}-{h}-{attempt}".lower()


def _qty_mem(v: float) -> str:
    return f"{int(v * 1000)}M" if v < 1 else f"{v:g}G"


def task_envs(home: Path) -> dict:
    """Where the launcher keeps packages_to_install layers, and when they are garbage-collected
    (``KETCH_TASK_ENVS_MAX_AGE_DAYS``, default 7; ``KETCH_TASK_ENVS_MAX_GB``, default 5)."""
    return {
        "root": str(home / "envs" / "tasks"),
        "maxAgeSeconds": float(os.environ.get("KETCH_TASK_ENVS_MAX_AGE_DAYS") or 7) * 86400,
        "maxBytes": int(float(os.environ.get("KETCH_TASK_ENVS_MAX_GB") or 5) * (1 << 30)),
    }


def build_pod(run: dict, rec: dict, task: dict, name: str, task_file: str, store_env: list[dict] | None = None) -> dict:
    """The task's Pod. ``store_env`` (first, so the task's own env wins) lets the launcher reach an object
    store pipeline root: the endpoint, and the credentials from the namespace's Secret."""
    res = task.get("resources") or {}
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if res.get("resourceCpuLimit") or res.get("cpuLimit"):
        limits["cpu"] = str(res.get("resourceCpuLimit") or f"{res['cpuLimit']:g}")
    if res.get("resourceMemoryLimit") or res.get("memoryLimit"):
        limits["memory"] = str(res.get("resourceMemoryLimit") or _qty_mem(res["memoryLimit"]))
    if res.get("resourceCpuRequest") or res.get("cpuRequest"):
        requests["cpu"] = str(res.get("resourceCpuRequest") or f"{res['cpuRequest']:g}")
    if res.get("resourceMemoryRequest") or res.get("memoryRequest"):
        requests["memory"] = str(res.get("resourceMemoryRequest") or _qty_mem(res["memoryRequest"]))
    acc = res.get("accelerator") or {}
    acc_type = acc.get("resourceType") or acc.get("type")
    if acc_type:
        limits[acc_type if "/" in acc_type else "nvidia.com/gpu"] = str(acc.get("resourceCount") or acc.get("count") or 1)
    env = [*(store_env or []), *({"name": e["name"], "value": str(e.get("value", ""))} for e in task.get("env") or [])]
    env.append({"name": "KFP_POD_NAME", "value": name})
    volumes: list[dict] = []
    mounts: list[dict] = []
    plat = task.get("platform") or {}
    inputs = task.get("allInputs") or {}

    def pname(d: dict, key: str) -> str | None:
        if d.get(key):
            return d[key]
        p = d.get(key + "Parameter") or {}
        if "runtimeValue" in p:
            return (p["runtimeValue"] or {}).get("constant")
        if "componentInputParameter" in p:
            return inputs.get(p["componentInputParameter"])
        return d.get("constant")

    for s in plat.get("secretAsEnv") or []:
        for k in s.get("keyToEnv") or []:
            env.append({"name": k["envVar"], "valueFrom": {"secretKeyRef": {"name": pname(s, "secretName"), "key": k["secretKey"], "optional": bool(s.get("optional"))}}})
    for s in plat.get("configMapAsEnv") or []:
        for k in s.get("keyToEnv") or []:
            env.append({"name": k["envVar"], "valueFrom": {"configMapKeyRef": {"name": pname(s, "configMapName"), "key": k["configMapKey"], "optional": bool(s.get("optional"))}}})
    for f in plat.get("fieldPathAsEnv") or []:
        env.append({"name": f["name"], "valueFrom": {"fieldRef": {"fieldPath": f["fieldPath"]}}})
    for i, s in enumerate(plat.get("secretAsVolume") or []):
        volumes.append({"name": f"secret-{i}", "secret": {"secretName": pname(s, "secretName"), "optional": bool(s.get("optional"))}})
        mounts.append({"name": f"secret-{i}", "mountPath": s["mountPath"]})
    for i, s in enumerate(plat.get("configMapAsVolume") or []):
        volumes.append({"name": f"configmap-{i}", "configMap": {"name": pname(s, "configMapName"), "optional": bool(s.get("optional"))}})
        mounts.append({"name": f"configmap-{i}", "mountPath": s["mountPath"]})
    for i, s in enumerate(plat.get("pvcMount") or []):
        claim = pname(s, "pvcName") or s.get("constant")
        if "taskOutputParameter" in s:
            claim = claim or inputs.get(s["taskOutputParameter"].get("outputParameterKey"))
        volumes.append({"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": f"pvc-{i}", "mountPath": s["mountPath"]})
    md = plat.get("podMetadata") or {}
    labels = {**(md.get("labels") or {}), LABEL_RUN: run["metadata"]["name"], LABEL_TASK: engine.slug(rec["id"])[:63].strip("-.") or "task"}
    container = {
        "name": "main", "image": task.get("image") or "python:3.11",
        "command": [sys.executable, "-m", "ketch.pipelines.launcher", task_file], "env": env,
    }
    if limits or requests:
        container["resources"] = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict = {"restartPolicy": "Never", "containers": [container]}
    if volumes:
        spec["volumes"] = volumes
    if plat.get("activeDeadlineSeconds"):
        spec["activeDeadlineSeconds"] = int(plat["activeDeadlineSeconds"])
    sa = (run.get("spec") or {}).get("serviceAccount")
    if sa:
        spec["serviceAccountName"] = sa
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": run["metadata"]["namespace"], "labels": labels,
            "annotations": {
                **(md.get("annotations") or {}), "pipelines.kubeflow.org/task-id": rec["id"], "pipelines.kubeflow.org/task-name": rec["name"],
                PRELOAD: "ketch.pipelines._preload",  # the kubelet may fork the launcher from a warm interpreter
            },
            "ownerReferences": [owner_reference(run)],
        },
        "spec": spec,
    }


_ir_cache: dict[tuple[str, int], ir.Pipeline] = {}


class RunController(Controller):
    name = "pipelinerun"
    kind = RUN
    owns = [POD]
    workers = 4
    needs_context = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx.api)
        self.home = Path(ctx.settings.home)
        self._store_secrets = storage.Secrets(self.client)

    def store_env(self, ns: str, pipeline_root: str) -> list[dict]:
        """What a task Pod needs to reach an object-store pipeline root (none for a local one): the endpoint,
        and ketch's own credentials through the namespace's Secret ``storage.SECRET``."""
        return self._store_secrets.pod_env(ns) if storage.is_remote(pipeline_root) else []

    @staticmethod
    def owned_predicate(old: dict | None, new: dict) -> bool:
        """A task Pod matters to its run when it ends or starts deleting (its deletion always does): the
        run recorded the task as running when it made the Pod, and timeouts come back as requeues."""
        def key(p: dict | None) -> tuple:
            if p is None:
                return (None, None)
            ph = (p.get("status") or {}).get("phase")
            return (ph if ph in ("Succeeded", "Failed") else None, p["metadata"].get("deletionTimestamp"))

        return key(old) != key(new) and key(new) != (None, None)

    async def reconcile(self, key: Key) -> Result | None:
        run = self.get(key)
        if run is None or run["metadata"].get("deletionTimestamp"):
            return None
        spec = run.get("spec") or {}
        st = dict(run.get("status") or {})
        state = st.get("state") or "PENDING"
        if state in FINAL:
            return None
        uid = run["metadata"]["uid"]
        gen = int(run["metadata"].get("generation") or 1)
        p = _ir_cache.get((uid, gen))
        if p is None:
            try:
                p = ir.load({"pipeline_spec": spec.get("pipelineSpec"), "platform_spec": spec.get("platformSpec") or {}})
            except ir.IRError as e:
                self._finish(run, st, "FAILED", str(e))
                return None
            for note in p.notes:
                log.info("run %s: %s", key, note)
                self.client.event(run, "Normal", "OptionIgnored", note)
            if len(_ir_cache) > 500:
                _ir_cache.clear()
            _ir_cache[(uid, gen)] = p
        rc = spec.get("runtimeConfig") or {}
        created = run["metadata"].get("creationTimestamp") or engine.now_iso()
        info = engine.RunInfo(
            run_id=run["metadata"]["name"], run_name=f"{p.name}-{run['metadata']['name'][:8]}", display_name=spec.get("displayName") or run["metadata"]["name"],
            pipeline_root=rc.get("pipelineRoot") or p.spec.get("defaultPipelineRoot") or artifact_root(self.home),
            task_root=str(self.home / "pipelines" / "runs" / uid), create_time=created,
            schedule_time=spec.get("scheduledAt") or created, enable_caching=spec.get("enableCaching"),
        )
        tasks = dict(st.get("tasks") or {})
        runner = PodRunner(self, run, info)
        eng = engine.Engine(p, info, tasks, dict(rc.get("parameters") or {}), runner, cancel=bool(spec.get("cancel")),
                            suspend=bool(spec.get("suspend")))
        try:
            new_state, outputs = eng.step()
        except KeyError as e:
            self._finish(run, st, "FAILED", f"pipeline input: {e.args[0]}")
            return None
        st["tasks"] = tasks
        if new_state in FINAL:
            st["outputs"] = outputs
            err = None
            if new_state == "FAILED":
                failed = [r for r in tasks.values() if r["state"] == "FAILED" and r["kind"] in ir.LEAF_KINDS or (r["state"] == "FAILED" and r.get("error") and r["kind"] != "dag")]
                err = failed[0].get("error") if failed else "a task failed"
                if failed:
                    err = f"task {failed[0]['name']!r} failed: {err}"
            self._finish(run, st, new_state, err)
            return None
        if new_state != state or eng.changed:
            if new_state != state:
                _push_state(st, new_state)
            st["summary"] = _summary(tasks, p)
            run["status"] = st
            self.update_status(run)
        return Result(requeue_after=eng.wake) if eng.wake else None

    def _finish(self, run: dict, st: dict, state: str, error: str | None) -> None:
        _push_state(st, state, error)
        st["finishedAt"] = engine.now_iso()
        if error:
            st["error"] = {"code": 2, "message": error}
        st["summary"] = _summary(st.get("tasks") or {})
        run["status"] = st
        self.update_status(run)
        self.client.event(run, "Normal" if state == "SUCCEEDED" else "Warning", f"Run{state.capitalize()}", error or f"run {state.lower()}")


def _push_state(st: dict, state: str, error: str | None = None) -> None:
    st["state"] = state
    h = st.setdefault("stateHistory", [])
    if not h or h[-1]["state"] != state:
        e = {"update_time": engine.now_iso(), "state": state}
        if error:
            e["error"] = {"code": 2, "message": error}
        h.append(e)


def _summary(tasks: dict, p: ir.Pipeline | None = None) -> str:
    """The "done/total" count of leaf tasks (`ketch status` and `ketch run` draw it as a bar). While the run
    is going, the total includes tasks not created yet (``engine.task_progress``); once it has ended, it is
    what ran."""
    if p is not None:
        return "{}/{}".format(*engine.task_progress(p, tasks))
    leaf = [r for r in tasks.values() if r["kind"] in ir.LEAF_KINDS]
    done = sum(1 for r in leaf if r["state"] in FINAL)
    return f"{done}/{len(leaf)}"


def now() -> float:
    return time.time()


CONTROLLERS = [RunController]
