"""Kubeflow Trainer v2: TrainJob run from a (Cluster)TrainingRuntime.

The real Trainer renders a JobSet; ketch renders the same Pods directly: ``<job>-node-0-<i>`` with the
JobSet labels (``jobset.sigs.k8s.io/jobset-name``, ``replicatedjob-name=node``,
``batch.kubernetes.io/job-completion-index``) the ``kubeflow`` SDK selects on, a container named ``node``,
and the env its runtime plugins inject (torch: PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK,
PET_MASTER_ADDR/PORT; jax: JAX_*; xgboost: DMLC_*), with a real port per job on this host.
"""

from __future__ import annotations

import copy
import fnmatch
import math

from ketch.kinds.meta import age_seconds, now, owner_reference
from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result, Watch
from ketch.runtime.ports import free_port
from ketch.training.pods import exit_code, gang_fits, phase, pod_requests, quantity
from ketch.training.ports import peer_host, service_ports

POD = ("v1", "Pod")
SERVICE = ("v1", "Service")
API = "trainer.kubeflow.org/v1alpha1"
JOBSET = "jobset.sigs.k8s.io/jobset-name"
RJOB = "jobset.sigs.k8s.io/replicatedjob-name"
INDEX = "batch.kubernetes.io/job-completion-index"
ANCESTOR = "trainer.kubeflow.org/trainjob-ancestor-step"
HOST = "127.0.0.1"
RESERVED = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}


def _set(status: dict, ctype: str, value: str, reason: str, message: str) -> None:
    conds = [c for c in status.get("conditions") or [] if c.get("type") != ctype]
    old = next((c for c in status.get("conditions") or [] if c.get("type") == ctype), None)
    if old and old.get("status") == value and old.get("reason") == reason:
        return
    conds.append({"type": ctype, "status": value, "reason": reason, "message": message, "lastTransitionTime": now()})
    status["conditions"] = conds


def _true(status: dict, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in status.get("conditions") or [])


def node_job(runtime: dict) -> dict | None:
    """The replicated job that runs the trainer: the one marked as the trainer ancestor, else "node"."""
    rjobs = ((((runtime.get("spec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs")) or []
    for rj in rjobs:
        if (((rj.get("template") or {}).get("metadata") or {}).get("labels") or {}).get(ANCESTOR) == "trainer":
            return rj
    return next((rj for rj in rjobs if rj.get("name") == "node"), None)


def replicated_jobs(runtime: dict) -> list[dict]:
    return ((((runtime.get("spec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs")) or []


def _initializer_kind(step: str, rj: dict) -> str | None:
    """"dataset" or "model" for Trainer's initializer jobs (by ancestor label or name), else None."""
    label = (((rj.get("template") or {}).get("metadata") or {}).get("labels") or {}).get(ANCESTOR, "")
    for kind in ("dataset", "model"):
        if label == f"{kind}-initializer" or step == f"{kind}-initializer":
            return kind
    return None


def _deps_met(rj: dict, by_step: dict[str, list[dict]], names: dict[str, list[str]]) -> bool:
    """JobSet's dependsOn: each named replicated job Complete (all pods Succeeded) or Ready (all up)."""
    for dep in rj.get("dependsOn") or []:
        mine = by_step.get(dep.get("name", ""))
        if mine is None:
            continue  # a dependency the runtime does not define cannot hold the job
        want = len(names.get(dep.get("name", ""), []))
        ok = ("Succeeded",) if (dep.get("status") or "Complete") == "Complete" else ("Running", "Succeeded")
        if sum(1 for p in mine if phase(p) in ok) < want:
            return False
    return True


def _failure(step: str, rj: dict, pod: dict, spec: dict) -> tuple[str, str]:
    code = exit_code(pod)
    pname, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
    why = f"exit code {code}" if code is not None else (pod.get("status") or {}).get("reason") or "failed"
    kind = _initializer_kind(step, rj)
    if kind is None:
        return "JobSetFailed", f"{step} pod {pname} failed ({why})"
    uri = (((spec.get("initializer") or {}).get(kind)) or {}).get("storageUri")
    src = f" fetching {uri}" if uri else ""
    return (f"{kind.capitalize()}InitializerFailed",
            f"the {kind} initializer failed{src}: pod {pname} {why}; the trainer nodes were not started (kubectl logs {pname} -n {ns} says why)")


def _nproc(trainer: dict, torch: dict, resources: dict) -> str:
    n = trainer.get("numProcPerNode") or torch.get("numProcPerNode") or "auto"
    if str(n) != "auto":
        return str(n)
    req = resources.get("requests") or resources.get("limits") or {}
    if any("gpu" in k for k in req):
        return "auto"
    cpu = req.get("cpu")
    return str(max(1, math.floor(quantity(cpu)))) if cpu is not None else "1"


class TrainJobController(Controller):
    name = "trainjob-controller"
    kind = (API, "TrainJob")
    owns = [POD, SERVICE]

    def extra_watches(self) -> list[Watch]:
        return []

    async def reconcile(self, key: Key) -> Result | None:
        job = self.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        return self.sync(job)

    def _runtime(self, job: dict) -> dict | None:
        ref = (job.get("spec") or {}).get("runtimeRef") or {}
        if ref.get("kind") == "TrainingRuntime":
            return self.client.get((API, "TrainingRuntime"), job["metadata"]["namespace"], ref.get("name", ""))
        return self.client.get((API, "ClusterTrainingRuntime"), "", ref.get("name", ""))

    def sync(self, job: dict) -> Result | None:
        md = job["metadata"]
        name, ns, uid = md["name"], md["namespace"], md["uid"]
        spec = job.get("spec") or {}
        status = copy.deepcopy(job.get("status") or {})
        orig = copy.deepcopy(status)
        pods = self._pods(job)
        if _true(status, "Complete") or _true(status, "Failed"):
            return self._write(job, status, orig)
        runtime = self._runtime(job)
        rj = node_job(runtime) if runtime else None
        if rj is None:
            ref = spec.get("runtimeRef") or {}
            _set(status, "Failed", "True", "TrainingRuntimeNotSupported",
                 f"{ref.get('kind', 'ClusterTrainingRuntime')} {ref.get('name')!r} not found or has no trainer node job")
            self.client.event(job, "Warning", "TrainingRuntimeNotSupported", status["conditions"][-1]["message"])
            return self._write(job, status, orig)
        if spec.get("suspend"):
            for p in pods:
                self.client.delete(POD, ns, p["metadata"]["name"])
            _set(status, "Suspended", "True", "Suspended", "TrainJob is suspended")
            return self._write(job, status, orig)
        if _true(status, "Suspended"):
            _set(status, "Suspended", "False", "Resumed", "TrainJob is resumed")
        ads = spec.get("activeDeadlineSeconds")
        result = None
        if ads:
            left = float(ads) - (age_seconds(md.get("creationTimestamp")) or 0.0)
            if left <= 0:
                return self._finish(job, status, orig, pods, "Failed", "DeadlineExceeded", f"TrainJob exceeded its activeDeadlineSeconds ({ads}s)")
            result = Result(requeue_after=left + 0.05)

        ml = (runtime.get("spec") or {}).get("mlPolicy") or {}
        trainer = spec.get("trainer") or {}
        n = int(trainer.get("numNodes") or ml.get("numNodes") or 1)
        node = rj.get("name", "node")
        # Every replicated job of the runtime, in JobSet's dependsOn order: initializers before the nodes.
        steps = {r.get("name", ""): r for r in replicated_jobs(runtime)}
        names = {step: ([f"{name}-{step}-0-{i}" for i in range(n)] if step == node else [f"{name}-{step}-0-0"]) for step in steps}
        by_step = {step: [p for p in pods if p["metadata"]["name"] in names[step]] for step in steps}
        for step, mine in by_step.items():
            bad = next((p for p in mine if phase(p) == "Failed"), None)
            if bad is not None:
                reason, msg = _failure(step, steps[step], bad, spec)
                return self._finish(job, status, orig, pods, "Failed", reason, msg)
        port = self._master_port(job, names[node][0])
        for step, r in steps.items():
            have = {p["metadata"]["name"] for p in by_step[step]}
            missing = [i for i, pname in enumerate(names[step]) if pname not in have]
            if not missing or not _deps_met(r, by_step, names):
                continue
            if step == node and not have:
                # Gang start, as for v1 jobs: all node pods fit at once or none is created.
                need: dict[str, float] = {}
                for _ in missing:
                    for k, v in pod_requests(self._node_spec(rj, trainer)).items():
                        need[k] = need.get(k, 0.0) + v
                ok, why = gang_fits(self.client, need, uid)
                if not ok:
                    self.client.event(job, "Warning", "GangNotAdmitted",
                                      f"TrainJob {name} is waiting for resources to start all {n} nodes together: {why}")
                    result = Result(requeue_after=1.0)
                    continue
            for i in missing:
                if step == node:
                    self._create_pod(job, runtime, rj, ml, trainer, i, n, names[step][i], port, peer_host(names[node][0]))
                else:
                    self._create_step_pod(job, r, step, names[step][0])
        pods = self._pods(job)
        status["jobsStatus"] = []
        for step in steps:
            mine = [p for p in pods if p["metadata"]["name"] in names[step]]
            counts = {ph: sum(1 for p in mine if phase(p) == ph) for ph in ("Running", "Succeeded", "Failed", "Pending")}
            status["jobsStatus"].append({"name": step, "ready": counts["Running"], "succeeded": counts["Succeeded"],
                                         "failed": counts["Failed"], "active": counts["Running"] + counts["Pending"], "suspended": 0})
        if sum(1 for p in pods if p["metadata"]["name"] in names[node] and phase(p) == "Succeeded") == n:
            return self._finish(job, status, orig, pods, "Complete", "JobSetCompleted", "jobset completed successfully")
        self._write(job, status, orig)
        if result is None and any(not _deps_met(r, {s: [p for p in pods if p["metadata"]["name"] in names[s]] for s in steps}, names)
                                  for r in steps.values()):
            result = Result(requeue_after=1.0)  # a step waits on another; pod events wake us sooner
        return result

    def _pods(self, job: dict) -> list[dict]:
        md = job["metadata"]
        return [p for p in self.client.list(POD, md["namespace"], {JOBSET: md["name"]})
                if any(o.get("uid") == md["uid"] for o in p["metadata"].get("ownerReferences") or [])]

    def _node_spec(self, rj: dict, trainer: dict) -> dict:
        pspec = copy.deepcopy(((((rj.get("template") or {}).get("spec") or {}).get("template")) or {}).get("spec") or {})
        for c in pspec.get("containers") or []:
            if c.get("name") == "node" and trainer.get("resourcesPerNode"):
                c["resources"] = trainer["resourcesPerNode"]
        return pspec

    def _create_step_pod(self, job: dict, rj: dict, step: str, pname: str) -> None:
        """A pod of a non-trainer replicated job (an initializer), with the TrainJob's initializer config."""
        md = job["metadata"]
        ptmpl = copy.deepcopy((((rj.get("template") or {}).get("spec") or {}).get("template")) or {})
        pspec = ptmpl.get("spec") or {}
        pspec["restartPolicy"] = "OnFailure" if pspec.get("restartPolicy") == "OnFailure" else "Never"
        kind = _initializer_kind(step, rj)
        init = ((job.get("spec") or {}).get("initializer") or {}).get(kind or "") or {}
        for c in pspec.get("containers") or []:
            if kind is None or c.get("name") != step:
                continue
            if not c.get("command") and not c.get("args") and fnmatch.fnmatchcase(c.get("image") or "", f"*kubeflow/trainer/{kind}-initializer*"):
                # Trainer's initializer images: their entrypoint is ketch's initializer, fetching into /workspace
                c["command"] = ["python", "-m", "ketch.training.initializers", kind, f"/workspace/{kind}"]
            extra = ([{"name": "STORAGE_URI", "value": str(init["storageUri"])}] if init.get("storageUri") else []) + list(init.get("env") or [])
            names = {e.get("name") for e in extra}
            c["env"] = [e for e in c.get("env") or [] if e.get("name") not in names] + extra
            if (init.get("secretRef") or {}).get("name"):
                c["envFrom"] = list(c.get("envFrom") or []) + [{"secretRef": {"name": init["secretRef"]["name"]}}]
        labels = {**((ptmpl.get("metadata") or {}).get("labels") or {}), **((job.get("spec") or {}).get("labels") or {}),
                  JOBSET: md["name"], RJOB: step, INDEX: "0", "trainer.kubeflow.org/trainjob-name": md["name"]}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": pname, "namespace": md["namespace"], "labels": labels,
                            "annotations": {INDEX: "0"}, "ownerReferences": [owner_reference(job)]},
               "spec": pspec}
        try:
            self.client.create(pod)
            self.client.event(job, "Normal", "SuccessfulCreatePod", f"Created pod: {pname}")
        except StatusError as e:
            if e.code != 409:
                raise

    def _master_port(self, job: dict, svc_name: str) -> int:
        md = job["metadata"]
        svc = self.client.get(SERVICE, md["namespace"], svc_name)
        if svc is None:
            taken = service_ports(self.client.list(SERVICE, None, JOBSET))
            svc = {"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": svc_name, "namespace": md["namespace"], "labels": {JOBSET: md["name"]},
                                "ownerReferences": [owner_reference(job)]},
                   "spec": {"clusterIP": "None", "selector": {JOBSET: md["name"], INDEX: "0"},
                            "ports": [{"name": "master", "port": free_port(taken), "protocol": "TCP"}]}}
            try:
                svc = self.client.create(svc)
            except StatusError as e:
                if e.code != 409:
                    raise
                svc = self.client.get(SERVICE, md["namespace"], svc_name) or svc
        return int(svc["spec"]["ports"][0]["port"])

    def _create_pod(self, job: dict, runtime: dict, rj: dict, ml: dict, trainer: dict, i: int, n: int, pname: str, port: int,
                    host: str = HOST) -> None:
        md = job["metadata"]
        ptmpl = copy.deepcopy((((rj.get("template") or {}).get("spec") or {}).get("template")) or {})
        pspec = ptmpl.get("spec") or {}
        pspec.setdefault("restartPolicy", "Never")
        if pspec["restartPolicy"] == "Always":
            pspec["restartPolicy"] = "Never"
        labels = {**((ptmpl.get("metadata") or {}).get("labels") or {}), **((job.get("spec") or {}).get("labels") or {}),
                  JOBSET: md["name"], RJOB: rj.get("name", "node"), INDEX: str(i), "trainer.kubeflow.org/trainjob-name": md["name"]}
        for c in pspec.get("containers") or []:
            if c.get("name") != "node":
                continue
            if trainer.get("image"):
                c["image"] = trainer["image"]
            if trainer.get("command"):
                c["command"] = trainer["command"]
                c.pop("args", None)
            if trainer.get("args"):
                c["args"] = trainer["args"]
            if trainer.get("resourcesPerNode"):
                c["resources"] = trainer["resourcesPerNode"]
            plugin = []
            if ml.get("torch") is not None:
                plugin = [("PET_NNODES", n), ("PET_NPROC_PER_NODE", _nproc(trainer, ml["torch"] or {}, c.get("resources") or {})),
                          ("PET_NODE_RANK", i), ("PET_MASTER_ADDR", host), ("PET_MASTER_PORT", port)]
            elif ml.get("jax") is not None:
                plugin = [("JAX_NUM_PROCESSES", n), ("JAX_PROCESS_ID", i), ("JAX_COORDINATOR_ADDRESS", f"{host}:{port}")]
            elif ml.get("xgboost") is not None:
                plugin = [("DMLC_TRACKER_URI", host), ("DMLC_TRACKER_PORT", port), ("DMLC_TASK_ID", i), ("DMLC_NUM_WORKER", n)]
            user = [e for e in trainer.get("env") or [] if e.get("name") not in RESERVED]
            names = {e["name"] for e in user} | {k for k, _ in plugin}
            c["env"] = [e for e in c.get("env") or [] if e.get("name") not in names] + user + [{"name": k, "value": str(v)} for k, v in plugin]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": pname, "namespace": md["namespace"], "labels": labels,
                            "annotations": {INDEX: str(i)}, "ownerReferences": [owner_reference(job)]},
               "spec": pspec}
        try:
            self.client.create(pod)
            self.client.event(job, "Normal", "SuccessfulCreatePod", f"Created pod: {pname}")
        except StatusError as e:
            if e.code != 409:
                raise

    def _finish(self, job: dict, status: dict, orig: dict, pods: list[dict], ctype: str, reason: str, msg: str) -> None:
        _set(status, ctype, "True", reason, msg)
        self.client.event(job, "Normal" if ctype == "Complete" else "Warning", reason, msg)
        if ctype == "Failed":
            for p in pods:
                if phase(p) in ("Pending", "Running"):
                    self.client.delete(POD, p["metadata"]["namespace"], p["metadata"]["name"])
        return self._write(job, status, orig)

    def _write(self, job: dict, status: dict, orig: dict) -> None:
        if status != orig:
            new = copy.deepcopy(job)
            new["status"] = status
            new["metadata"].pop("resourceVersion", None)
            self.client.update_status(new)
        return None


CONTROLLERS = [TrainJobController]
