"""apps/v1 ReplicaSet and core/v1 ReplicationController: keep ``spec.replicas`` Pods of a template.

One reconcile, as Kubernetes' replica set controller: read the Pods the set controls (through the label
index), create the missing ones from the template, delete the surplus in Kubernetes' order (unscheduled,
pending, not ready, least long ready, newest first), and report replicas, fullyLabeledReplicas,
readyReplicas, availableReplicas (ready for ``minReadySeconds``) and observedGeneration. A failed create
sets the ``ReplicaFailure`` condition. Pods that finish or are deleted are replaced; nothing is
remembered between calls.
"""

from __future__ import annotations

import copy

from ketch.controllers.workload_pods import (
    POD,
    active,
    available,
    deletion_rank,
    owned_pods,
    pod_from_template,
    ready,
    until_available,
)
from ketch.kinds.meta import get_condition, set_condition
from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result


class ReplicaSetController(Controller):
    name = "replicaset"
    kind = ("apps/v1", "ReplicaSet")
    owns = [POD]
    workers = 4

    def selector(self, rs: dict) -> dict:
        return (rs.get("spec") or {}).get("selector") or {}

    async def reconcile(self, key: Key) -> Result | None:
        rs = self.get(key)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return None
        spec = rs.get("spec") or {}
        want = int(spec.get("replicas", 1))
        pods = [p for p in owned_pods(self.client, rs, self.selector(rs)) if active(p)]
        failure: str | None = None
        if len(pods) < want:
            for _ in range(want - len(pods)):
                try:
                    pod = self.client.create(pod_from_template(rs, spec.get("template") or {}))
                except StatusError as e:
                    failure = e.message
                    self.client.event(rs, "Warning", "FailedCreate", f"Error creating: {e.message}", self.name + "-controller")
                    break
                pods.append(pod)
                self.client.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", self.name + "-controller")
        elif len(pods) > want:
            doomed = sorted(pods, key=deletion_rank)[: len(pods) - want]
            for p in doomed:
                try:
                    self.client.delete(POD, p["metadata"]["namespace"], p["metadata"]["name"])
                except StatusError as e:
                    if e.code != 409:
                        raise
                self.client.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}", self.name + "-controller")
                pods.remove(p)
        mrs = int(spec.get("minReadySeconds") or 0)
        tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        status = copy.deepcopy(rs.get("status") or {})
        status.update({
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(1 for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in tlabels.items())),
            "readyReplicas": sum(1 for p in pods if ready(p)),
            "availableReplicas": sum(1 for p in pods if available(p, mrs)),
            "observedGeneration": rs["metadata"].get("generation", 1),
        })
        if failure:
            set_condition(status, "ReplicaFailure", "True", "FailedCreate", failure)
        elif get_condition({"status": status}, "ReplicaFailure"):
            status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        for f in ("readyReplicas", "availableReplicas", "fullyLabeledReplicas"):
            if not status[f]:
                status.pop(f)  # zero counts are omitted, as Kubernetes' omitempty does
        if not status.get("conditions"):
            status.pop("conditions", None)
        if status != (rs.get("status") or {}):
            new = copy.deepcopy(rs)
            new["status"] = status
            self.update_status(new)
        wait = until_available(pods, mrs)
        if failure:
            return Result(requeue_after=1.0)
        return Result(requeue_after=wait) if wait else None


class ReplicationControllerController(ReplicaSetController):
    name = "replication"
    kind = ("v1", "ReplicationController")

    def selector(self, rc: dict) -> dict:
        return {"matchLabels": (rc.get("spec") or {}).get("selector") or {}}


CONTROLLERS = [ReplicaSetController, ReplicationControllerController]
