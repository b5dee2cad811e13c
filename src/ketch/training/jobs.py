"""The shared replica-job engine: one reconcile for PyTorchJob, TFJob, XGBoostJob, JAXJob, PaddleJob and MPIJob.

Reads the job, its Pods and Services, and steps toward the spec the way Kubeflow's training operator v1
does: a Service (with its own port on this host) and a Pod per replica, env wired by the framework module,
restart policies (ExitCode recreates pods whose exit code is retryable, >= 128), backoffLimit,
activeDeadlineSeconds, suspend/resume, gang admission, success policies, cleanPodPolicy and TTL. All
state lives in the objects (ports in Services, counted restarts in the job's status), so a restarted
ketch picks up where it stopped.
"""

from __future__ import annotations

import copy
import logging

from ketch.kinds.meta import age_seconds, now, owner_reference
from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result
from ketch.runtime.ports import free_port
from ketch.training import conditions as C
from ketch.training.frameworks import all_frameworks
from ketch.training.frameworks.base import Framework, Topology
from ketch.training.pods import exit_code, gang_fits, phase, pod_requests, restart_count, waiting_to_restart
from ketch.training.ports import peer_host, service_ports

log = logging.getLogger(__name__)

POD = ("v1", "Pod")
SERVICE = ("v1", "Service")
JOB_NAME = "training.kubeflow.org/job-name"
OPERATOR = "training.kubeflow.org/operator-name"
RTYPE = "training.kubeflow.org/replica-type"
RINDEX = "training.kubeflow.org/replica-index"
ROLE = "training.kubeflow.org/job-role"
HOST = "127.0.0.1"  # where pods run; a Ray kubelet will hand out the node's address instead


PLACEMENT_STRATEGY = "ketch.dev/placement-strategy"
PLACEMENT_GROUP = "ketch.dev/placement-group"
PLACEMENT_SIZE = "ketch.dev/placement-group-size"
PLACEMENT_INDEX = "ketch.dev/placement-index"
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def placement_annotations(job: dict, topo: Topology, rt: str, i: int) -> dict[str, str]:
    """A job annotated ``ketch.dev/placement-strategy`` (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD) asks for
    its replicas to be placed as one gang: each Pod names the group, its size and its place in it, and a
    kubelet that can (the Ray kubelet: one Ray placement group, a bundle per replica) places them all at
    once or none; others ignore the annotations."""
    strategy = ((job["metadata"].get("annotations") or {}).get(PLACEMENT_STRATEGY) or "").strip().upper()
    if strategy not in STRATEGIES:
        return {}
    order = [(r, n) for r, rs in topo.specs.items() for n in range(int(rs.get("replicas", 1)))]
    md = job["metadata"]
    return {PLACEMENT_STRATEGY: strategy, PLACEMENT_GROUP: f"{md['namespace']}.{md['name']}.{md['uid'][:8]}",
            PLACEMENT_SIZE: str(len(order)), PLACEMENT_INDEX: str(order.index((rt, i)))}


def pod_name(job: str, rtype: str, index: int) -> str:
    return f"{job}-{rtype.lower()}-{index}"


def _owned(obj: dict, uid: str) -> bool:
    return any(o.get("uid") == uid and o.get("controller") for o in obj["metadata"].get("ownerReferences") or [])


class ReplicaJobController(Controller):
    framework: Framework
    owns = [POD, SERVICE]

    async def reconcile(self, key: Key) -> Result | None:
        job = self.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        return self.sync(job)

    # -- the reconcile ------------------------------------------------------------------------------------

    def sync(self, job: dict) -> Result | None:
        fw = self.framework
        md = job["metadata"]
        name, ns, uid = md["name"], md["namespace"], md["uid"]
        spec = job.get("spec") or {}
        rp = spec.get("runPolicy") or {}
        status = copy.deepcopy(job.get("status") or {})
        orig = copy.deepcopy(status)
        specs = fw.normalized_specs(job)
        sel = {JOB_NAME: name}
        pods = [p for p in self.client.list(POD, ns, sel) if _owned(p, uid)]
        services = [s for s in self.client.list(SERVICE, ns, sel) if _owned(s, uid)]
        result: Result | None = None

        if not C.get(status, C.CREATED):
            C.set_condition(status, C.CREATED, f"{fw.kind}Created", f"{fw.kind} {name} is created.")
            self.client.event(job, "Normal", f"{fw.kind}Created", f"{fw.kind} {name} is created.")

        if C.finished(status):
            self._clean(job, pods, services, rp)
            result = self._ttl(job, status, rp)
            return self._write(job, status, orig) or result

        if rp.get("suspend"):
            for p in pods:
                self._delete_pod(job, p)
            if not C.is_true(status, C.SUSPENDED):
                msg = f"{fw.kind} {name} is suspended."
                C.set_condition(status, C.SUSPENDED, f"{fw.kind}Suspended", msg)
                self.client.event(job, "Normal", f"{fw.kind}Suspended", msg)
            status.pop("startTime", None)  # resuming starts the deadline clock afresh, as the operator does
            status["replicaStatuses"] = {rt: {"active": 0, "succeeded": 0, "failed": 0, **self._selector(job, rt)} for rt in specs}
            return self._write(job, status, orig)
        if C.is_true(status, C.SUSPENDED):
            msg = f"{fw.kind} {name} is resumed."
            C.set_condition(status, C.SUSPENDED, f"{fw.kind}Resumed", msg, "False")
            self.client.event(job, "Normal", f"{fw.kind}Resumed", msg)

        # Deadline and backoff come first: they end the job whatever the replicas are doing.
        ads = rp.get("activeDeadlineSeconds")
        if ads is not None and status.get("startTime"):
            left = float(ads) - (age_seconds(status["startTime"]) or 0.0)
            if left <= 0:
                return self._fail(job, status, orig, pods, "DeadlineExceeded",
                                  f"{fw.kind} {name} has failed because it was active longer than specified deadline ({ads}s).")
            result = Result(requeue_after=left + 0.05)
        counted = list(status.get("restartedPods") or [])
        bl = rp.get("backoffLimit")
        if bl is not None:
            restarts = len(counted)
            for p in pods:
                rt = self._rtype_of(p)
                if rt in specs and self._policy(specs[rt], rt) in ("OnFailure", "Always") and phase(p) in ("Pending", "Running"):
                    restarts += restart_count(p)
            if (restarts > 0 if bl == 0 else restarts >= bl) and (counted or any(restart_count(p) for p in pods)):
                return self._fail(job, status, orig, pods, "BackoffLimitExceeded",
                                  f"{fw.kind} {name} has failed because it has reached the specified backoff limit ({bl}).")

        # Services first: they hold each replica's port, which every replica's env needs.
        want = {self._pod_name(name, rt, i): (rt, i) for rt, rs in specs.items() for i in range(int(rs.get("replicas", 1)))}
        addrs: dict[tuple[str, int], tuple[str, int]] = {}
        have_svc = {s["metadata"]["name"]: s for s in services}
        taken = None
        for sname, (rt, i) in want.items():
            svc = have_svc.get(sname)
            if svc is None:
                if taken is None:
                    taken = service_ports(self.client.list(SERVICE, None, JOB_NAME))
                svc = self._create_service(job, rt, i, free_port(taken))
            addrs[(rt, i)] = (peer_host(sname), int(svc["spec"]["ports"][0]["port"]))
        for s in services:
            if s["metadata"]["name"] not in want:
                self.client.delete(SERVICE, ns, s["metadata"]["name"])
        topo = Topology(job=job, specs=specs, addrs=addrs)

        # Failed pods: recreate, restart or fail the job, by the replica's restart policy.
        restarting: list[str] = []
        live: dict[str, dict] = {}
        for p in pods:
            pname = p["metadata"]["name"]
            if pname not in want:
                self._delete_pod(job, p)  # scaled down (elastic) or a replica type removed
                continue
            rt, _ = want[pname]
            policy = self._policy(specs[rt], rt)
            if phase(p) == "Failed":
                code = exit_code(p, fw.main_container(p["spec"].get("containers") or []))
                retryable = code is not None and code >= 128
                if policy == "Never" or (policy == "ExitCode" and not retryable):
                    why = f"exit code {code}" if code is not None else (p.get("status") or {}).get("reason") or "failed"
                    return self._fail(job, status, orig, pods, f"{fw.kind}Failed",
                                      f"{fw.kind} {name} is failed because {rt} replica {pname} failed ({why}; restartPolicy {policy}).")
                if p["metadata"]["uid"] not in counted:
                    counted.append(p["metadata"]["uid"])
                    status["restartedPods"] = counted[-1000:]
                restarting.append(f"{pname} (exit code {code})")
                self.client.event(job, "Warning", f"{fw.kind}Restarting", f"Pod {pname} failed with exit code {code}; restarting it (restartPolicy {policy}).")
                self._write(job, status, orig)  # count the restart before the pod (the evidence) goes
                orig = copy.deepcopy(status)
                self._delete_pod(job, p)
                continue
            if waiting_to_restart(p):
                restarting.append(f"{pname} (container restarting)")
            live[pname] = p

        # Create missing pods, all together: gang admission when starting from nothing.
        missing = [(n, rt, i) for n, (rt, i) in want.items() if n not in live and not any(p["metadata"]["name"] == n for p in pods)]
        if missing and not live:
            need: dict[str, float] = {}
            for _, rt, _i in missing:
                for k, v in pod_requests(((specs[rt].get("template") or {}).get("spec")) or {}).items():
                    need[k] = need.get(k, 0.0) + v
            ok, why = gang_fits(self.client, need, uid)
            if not ok:
                msg = f"{fw.kind} {name} is waiting for resources to start all {len(missing)} replicas together: {why}"
                self.client.event(job, "Warning", "GangNotAdmitted", msg)
                status["replicaStatuses"] = {rt: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
                                             for rt, v in self._replica_statuses(job, specs, pods).items()}
                self._write(job, status, orig)
                return Result(requeue_after=1.0)
        if missing:
            self._ensure_objects(job, topo)
        by_name = {p["metadata"]["name"]: p for p in pods if p["metadata"]["name"] in live}
        deferred = False
        for _pname, rt, i in missing:
            if fw.defer(topo, rt, i, by_name):
                deferred = True  # waits for its peers (e.g. an MPI launcher for Running workers)
            else:
                self._create_pod(job, topo, rt, i, specs[rt])
        if deferred and result is None:
            result = Result(requeue_after=0.5)
        if missing and not status.get("startTime"):
            status["startTime"] = now()
            if ads is not None:
                result = Result(requeue_after=float(ads) + 0.05)

        # Status: replica counts, then the conditions they imply.
        pods = [p for p in self.client.list(POD, ns, sel) if _owned(p, uid)]
        st = self._replica_statuses(job, specs, pods)
        internal = {rt: v.pop("_succeededIndexes") for rt, v in st.items()}
        status["replicaStatuses"] = st
        judged = {rt: {**v, "_succeededIndexes": internal[rt]} for rt, v in st.items()}
        if fw.succeeded(topo, judged):
            msg = f"{fw.kind} {name} is successfully completed."
            C.set_condition(status, C.SUCCEEDED, f"{fw.kind}Succeeded", msg)
            status.setdefault("completionTime", now())
            self.client.event(job, "Normal", f"{fw.kind}Succeeded", msg)
            self._clean(job, pods, services, rp)
            self._write(job, status, orig)
            return self._ttl(job, status, rp)
        if restarting:
            C.set_condition(status, C.RESTARTING, f"{fw.kind}Restarting",
                            f"{fw.kind} {name} is restarting because {', '.join(restarting)} failed.")
        elif fw.running(topo, judged):
            C.set_condition(status, C.RUNNING, f"{fw.kind}Running", f"{fw.kind} {name} is running.")
        return self._write(job, status, orig) or result

    # -- helpers ------------------------------------------------------------------------------------------

    def _policy(self, rs: dict, rt: str) -> str:
        fw = self.framework
        return (rs.get("restartPolicy") or ((rs.get("template") or {}).get("spec") or {}).get("restartPolicy")
                or fw.default_restarts.get(rt) or fw.default_restart)

    def _pod_name(self, job: str, rt: str, i: int) -> str:
        return (self.framework.pod_name or pod_name)(job, rt, i)

    def _rtype_of(self, obj: dict) -> str | None:
        return self.framework.canonical(obj["metadata"].get("labels", {}).get(RTYPE, ""))

    def _labels(self, job: dict, rt: str, i: int | None = None) -> dict[str, str]:
        operator = self.framework.extra.get("operator_name") or f"{self.framework.kind.lower()}-controller"
        out = {JOB_NAME: job["metadata"]["name"], OPERATOR: operator, RTYPE: rt.lower()}
        if i is not None:
            out[RINDEX] = str(i)
        return out

    def _selector(self, job: dict, rt: str) -> dict:
        labels = self._labels(job, rt)
        return {"selector": ",".join(f"{k}={v}" for k, v in labels.items()), "labelSelector": {"matchLabels": labels}}

    def _replica_statuses(self, job: dict, specs: dict[str, dict], pods: list[dict]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for rt in specs:
            mine = [p for p in pods if self._rtype_of(p) == rt]
            done = {int(p["metadata"]["labels"].get(RINDEX, -1)) for p in mine if phase(p) == "Succeeded"}
            out[rt] = {
                "active": sum(1 for p in mine if phase(p) == "Running"),
                "succeeded": len(done),
                "failed": sum(1 for p in mine if phase(p) == "Failed"),
                **self._selector(job, rt),
                "_succeededIndexes": done,
            }
        return out

    def _create_service(self, job: dict, rt: str, i: int, port: int) -> dict:
        md = job["metadata"]
        labels = self._labels(job, rt, i)
        svc = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": self._pod_name(md["name"], rt, i), "namespace": md["namespace"], "labels": labels,
                         "ownerReferences": [owner_reference(job)]},
            "spec": {"clusterIP": "None", "selector": labels,
                     "ports": [{"name": self.framework.port_name, "port": port, "targetPort": port, "protocol": "TCP"}]},
        }
        try:
            out = self.client.create(svc)
        except StatusError as e:
            if e.code != 409:
                raise
            out = self.client.get(SERVICE, md["namespace"], svc["metadata"]["name"])
            if out is None:
                raise
            return out
        self.client.event(job, "Normal", "SuccessfulCreateService", f"Created service: {svc['metadata']['name']}")
        return out

    def _create_pod(self, job: dict, topo: Topology, rt: str, i: int, rs: dict) -> None:
        fw = self.framework
        md = job["metadata"]
        tmpl = copy.deepcopy(rs.get("template") or {})
        tmd = tmpl.get("metadata") or {}
        labels = {**(tmd.get("labels") or {}), **self._labels(job, rt, i)}
        if fw.master_role(topo.specs, rt, i):
            labels[ROLE] = "master"
        spec = tmpl.get("spec") or {}
        policy = self._policy(rs, rt)
        spec["restartPolicy"] = "Never" if policy == "ExitCode" else policy
        wired = fw.env(topo, rt, i)
        names = {e["name"] for e in wired}
        port = topo.addr(rt, i)[1]
        main = fw.main_container(spec.get("containers") or [])
        for c in spec.get("containers") or []:
            if fw.env_all_containers or c.get("name") == main:
                c["env"] = [e for e in c.get("env") or [] if e.get("name") not in names] + wired
            if c.get("name") == main:
                ports = [p for p in c.get("ports") or [] if p.get("name") != fw.port_name]
                c["ports"] = ports + [{"name": fw.port_name, "containerPort": port, "protocol": "TCP"}]
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self._pod_name(md["name"], rt, i), "namespace": md["namespace"], "labels": labels,
                         "annotations": tmd.get("annotations") or {}, "ownerReferences": [owner_reference(job)]},
            "spec": spec,
        }
        fw.decorate(topo, rt, i, pod)
        pod["metadata"]["annotations"].update(placement_annotations(job, topo, rt, i))
        try:
            self.client.create(pod)
        except StatusError as e:
            if e.code == 409:
                return  # the old pod is still going away; its deletion requeues us
            raise
        self.client.event(job, "Normal", "SuccessfulCreatePod", f"Created pod: {pod['metadata']['name']}")

    def _ensure_objects(self, job: dict, topo: Topology) -> None:
        """The ConfigMaps/Secrets the framework's pods mount, owned by the job; ConfigMaps follow the spec."""
        md = job["metadata"]
        for obj in self.framework.objects(topo):
            obj = copy.deepcopy(obj)
            obj["metadata"] = {**obj.get("metadata", {}), "namespace": md["namespace"], "ownerReferences": [owner_reference(job)]}
            kind = (obj["apiVersion"], obj["kind"])
            have = self.client.get(kind, md["namespace"], obj["metadata"]["name"])
            if have is None:
                try:
                    self.client.create(obj)
                except StatusError as e:
                    if e.code != 409:
                        raise
            elif obj["kind"] == "ConfigMap" and have.get("data") != obj.get("data"):
                self.client.update({**have, "data": obj.get("data")})

    def _delete_pod(self, job: dict, p: dict) -> None:
        if p["metadata"].get("deletionTimestamp"):
            return
        self.client.delete(POD, p["metadata"]["namespace"], p["metadata"]["name"])
        self.client.event(job, "Normal", "SuccessfulDeletePod", f"Deleted pod: {p['metadata']['name']}")

    def _fail(self, job: dict, status: dict, orig: dict, pods: list[dict], reason: str, msg: str) -> None:
        C.set_condition(status, C.FAILED, reason, msg)
        status.setdefault("completionTime", now())
        self.client.event(job, "Warning", reason, msg)
        for p in pods:  # a failed job stops its replicas, whatever cleanPodPolicy keeps afterwards
            if phase(p) in ("Pending", "Running"):
                self._delete_pod(job, p)
        self._write(job, status, orig)
        return None

    def _clean(self, job: dict, pods: list[dict], services: list[dict], rp: dict) -> None:
        policy = rp.get("cleanPodPolicy") or "None"
        if policy == "None":
            return
        for p in pods:
            if policy == "All" or phase(p) in ("Pending", "Running"):
                self._delete_pod(job, p)
        if policy == "All":
            for s in services:
                self.client.delete(SERVICE, s["metadata"]["namespace"], s["metadata"]["name"])

    def _ttl(self, job: dict, status: dict, rp: dict) -> Result | None:
        ttl = rp.get("ttlSecondsAfterFinished")
        if ttl is None or not status.get("completionTime"):
            return None
        left = float(ttl) - (age_seconds(status["completionTime"]) or 0.0)
        if left > 0:
            return Result(requeue_after=left + 0.05)
        md = job["metadata"]
        self.client.delete((job["apiVersion"], job["kind"]), md["namespace"], md["name"], propagation="Background")
        return None

    def _write(self, job: dict, status: dict, orig: dict) -> None:
        if status == orig:
            return None
        new = copy.deepcopy(job)
        new["status"] = status
        # This controller is the only writer of the job's status, so the write does not need the
        # resourceVersion it read (which an earlier write in the same reconcile has moved on).
        new["metadata"].pop("resourceVersion", None)
        self.client.update_status(new)
        return None


def controller_for(fw: Framework) -> type[ReplicaJobController]:
    return type(f"{fw.kind}Controller", (ReplicaJobController,),
                {"name": f"{fw.kind.lower()}-controller", "kind": (fw.api_version, fw.kind), "framework": fw})


CONTROLLERS = [controller_for(fw) for fw in all_frameworks()]
