"""apps/v1 DaemonSet: one Pod on every Node its template may run on (``nodeSelector`` against the Node's
labels; unschedulable Nodes are skipped). With the Ray kubelet's many Nodes this is a Pod per Ray node.

Each reconcile, as Kubernetes' daemonset controller: the template's ControllerRevision is the update
revision (``revisions.py``); an eligible Node without a Pod gets one bound to it (``spec.nodeName``), a
Pod on a Node that is gone or no longer eligible is deleted, a finished Pod is replaced. **RollingUpdate**
deletes old-revision Pods while at most ``maxUnavailable`` of the set's Pods are unavailable (they come
back at the new revision; ``maxSurge`` is treated as 0: the old Pod goes before the new one starts);
**OnDelete** waits for someone to delete them. Status: desiredNumberScheduled, currentNumberScheduled,
numberMisscheduled, numberReady, numberAvailable, numberUnavailable, updatedNumberScheduled and
observedGeneration, which ``kubectl rollout status ds`` reads.
"""

from __future__ import annotations

import copy
import math

from ketch.controllers.revisions import HASH_LABEL, ensure_update_revision, revisions, truncate_history
from ketch.controllers.workload_pods import (
    POD,
    active,
    available,
    owned_pods,
    pod_from_template,
    ready,
    terminal,
    until_available,
)
from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result, Watch, key_of

NODE = ("v1", "Node")
GENERATION = "pod-template-generation"


def _eligible(ds: dict, node: dict) -> bool:
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    sel = ((((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector")) or {}
    labels = node["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in sel.items())


class DaemonSetController(Controller):
    name = "daemonset"
    kind = ("apps/v1", "DaemonSet")
    owns = [POD, ("apps/v1", "ControllerRevision")]
    cache_primary = True

    def extra_watches(self) -> list[Watch]:
        # A Node that comes, goes or is relabelled concerns every DaemonSet.
        return [Watch(NODE, lambda _n: [key_of(d) for d in self.cached(self.kind)],
                      lambda old, new: old is None or (old["metadata"].get("labels"), (old.get("spec") or {}).get("unschedulable")) != (new["metadata"].get("labels"), (new.get("spec") or {}).get("unschedulable")))]

    async def reconcile(self, key: Key) -> Result | None:
        ds = self.get(key)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return None
        spec = ds.get("spec") or {}
        revs = revisions(self.client, ds)
        update, revs = ensure_update_revision(self.client, ds, revs)
        uname = update["metadata"]["name"]
        nodes = {n["metadata"]["name"]: n for n in self.client.list(NODE)}
        eligible = {n for n, node in nodes.items() if _eligible(ds, node)}
        by_node: dict[str, list[dict]] = {}
        for p in owned_pods(self.client, ds, spec.get("selector")):
            by_node.setdefault((p.get("spec") or {}).get("nodeName") or "", []).append(p)
        # -- wrong places and extras
        for node, pods in by_node.items():
            live = [p for p in pods if active(p)]
            if node not in eligible:
                for p in live:
                    self._delete(ds, p)
                continue
            for p in pods:
                if terminal(p) and not p["metadata"].get("deletionTimestamp"):
                    self._delete(ds, p)
            for p in sorted(live, key=lambda p: p["metadata"].get("creationTimestamp", ""))[1:]:
                self._delete(ds, p)
        # -- missing Pods
        for node in sorted(eligible):
            if not any(active(p) or not terminal(p) for p in by_node.get(node, [])):
                pod = pod_from_template(ds, spec.get("template") or {}, labels={HASH_LABEL: uname, GENERATION: str(ds["metadata"].get("generation", 1))})
                pod["spec"]["nodeName"] = node
                try:
                    created = self.client.create(pod)
                    by_node.setdefault(node, []).append(created)
                    self.client.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", "daemonset-controller")
                except StatusError as e:
                    self.client.event(ds, "Warning", "FailedCreate", f"Error creating: {e.message}", "daemonset-controller")
        # -- rolling update
        mrs = int(spec.get("minReadySeconds") or 0)
        mine = [p for n in eligible for p in by_node.get(n, []) if active(p)]
        us = spec.get("updateStrategy") or {}
        if us.get("type", "RollingUpdate") == "RollingUpdate":
            mu = (us.get("rollingUpdate") or {}).get("maxUnavailable", 1)
            budget = math.floor(int(mu[:-1]) * len(eligible) / 100) if isinstance(mu, str) and mu.endswith("%") else int(mu)
            budget = max(budget, 1)
            unavailable = len(eligible) - sum(1 for p in mine if available(p, mrs))
            old = [p for p in mine if (p["metadata"].get("labels") or {}).get(HASH_LABEL) != uname]
            old.sort(key=lambda p: (available(p, mrs), p["metadata"]["name"]))  # unavailable old Pods go first
            for p in old:
                if unavailable >= budget and available(p, mrs):
                    break
                self._delete(ds, p)
                if available(p, mrs):
                    unavailable += 1
        return self._status(ds, eligible, by_node, uname, revs, mrs)

    def _delete(self, ds: dict, pod: dict) -> None:
        try:
            self.client.delete(POD, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except StatusError as e:
            if e.code != 409:
                raise
        self.client.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}", "daemonset-controller")

    def _status(self, ds: dict, eligible: set[str], by_node: dict[str, list[dict]], uname: str, revs: list[dict], mrs: int) -> Result | None:
        def live_on(n: str) -> list[dict]:
            return [p for p in by_node.get(n, []) if active(p) and p["metadata"].get("uid")]

        scheduled = [n for n in eligible if live_on(n)]
        pods = [live_on(n)[0] for n in scheduled]
        st = copy.deepcopy(ds.get("status") or {})
        st.update({
            "desiredNumberScheduled": len(eligible),
            "currentNumberScheduled": len(scheduled),
            "numberMisscheduled": sum(1 for n in by_node if n not in eligible and live_on(n)),
            "numberReady": sum(1 for p in pods if ready(p)),
            "numberAvailable": sum(1 for p in pods if available(p, mrs)),
            "updatedNumberScheduled": sum(1 for p in pods if (p["metadata"].get("labels") or {}).get(HASH_LABEL) == uname),
            "observedGeneration": ds["metadata"].get("generation", 1),
        })
        st["numberUnavailable"] = len(eligible) - st["numberAvailable"]
        for f in ("numberAvailable", "numberUnavailable", "updatedNumberScheduled"):
            if not st[f]:
                st.pop(f)
        if st != (ds.get("status") or {}):
            self.update_status({**ds, "status": st})
        in_use = {(p["metadata"].get("labels") or {}).get(HASH_LABEL) for ps in by_node.values() for p in ps} | {uname}
        truncate_history(self.client, ds, revs, {x for x in in_use if x})
        wait = until_available(pods, mrs)
        return Result(requeue_after=wait) if wait else None


CONTROLLERS = [DaemonSetController]
