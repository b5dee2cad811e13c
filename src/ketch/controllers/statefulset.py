"""apps/v1 StatefulSet: Pods with stable names ``<name>-<ordinal>``, stable storage, and ordered changes.

Each reconcile, as Kubernetes' statefulset controller:

- the template's ControllerRevision (``revisions.py``) is the update revision; ``status.currentRevision``
  stays on the old one until every Pod runs the new;
- each ordinal below ``replicas`` gets its PersistentVolumeClaims from ``volumeClaimTemplates``
  (``<template>-<name>-<ordinal>``, kept when the Pod goes, as Kubernetes' Retain policy; owned by the set
  with ``whenDeleted: Delete``) and its Pod, with ``hostname`` = its name, ``subdomain`` = serviceName,
  labels ``statefulset.kubernetes.io/pod-name``, ``apps.kubernetes.io/pod-index`` and
  ``controller-revision-hash``; Pods below the partition keep the current revision's template;
- **OrderedReady**: one ordinal at a time, each created only when all lower ones are Running and Ready;
  scale-down removes the highest ordinal first, one at a time; **Parallel**: all at once;
- **RollingUpdate**: once all Pods are ready, the highest ordinal at or above ``partition`` still on an
  old revision is deleted (and recreated at the update revision), one at a time; **OnDelete**: Pods are
  only recreated when someone deletes them;
- status: observedGeneration, replicas, readyReplicas, availableReplicas, currentReplicas,
  updatedReplicas, currentRevision, updateRevision, which ``kubectl rollout status sts`` reads.
"""

from __future__ import annotations

import copy

from ketch.controllers.revisions import (
    HASH_LABEL,
    ensure_update_revision,
    revisions,
    template_of,
    truncate_history,
)
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
from ketch.kinds.meta import owner_reference
from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result

PVC = ("v1", "PersistentVolumeClaim")
POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"


def ordinal(sts: dict, pod: dict) -> int | None:
    prefix = sts["metadata"]["name"] + "-"
    n = pod["metadata"]["name"]
    if not n.startswith(prefix) or not n[len(prefix):].isdigit():
        return None
    return int(n[len(prefix):])


def _healthy(p: dict) -> bool:
    return active(p) and (p.get("status") or {}).get("phase") == "Running" and ready(p)


class StatefulSetController(Controller):
    name = "statefulset"
    kind = ("apps/v1", "StatefulSet")
    owns = [POD, ("apps/v1", "ControllerRevision")]
    workers = 2

    async def reconcile(self, key: Key) -> Result | None:
        sts = self.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return None
        spec = sts.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        revs = revisions(self.client, sts)
        update, revs = ensure_update_revision(self.client, sts, revs)
        by_name = {r["metadata"]["name"]: r for r in revs}
        current_name = (sts.get("status") or {}).get("currentRevision") or update["metadata"]["name"]
        current = by_name.get(current_name, update)
        us = spec.get("updateStrategy") or {}
        partition = int((us.get("rollingUpdate") or {}).get("partition") or 0) if us.get("type", "RollingUpdate") == "RollingUpdate" else 0
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        pods = {}
        for p in owned_pods(self.client, sts, spec.get("selector")):
            i = ordinal(sts, p)
            if i is not None:
                pods[i] = p

        def rev_for(i: int) -> dict:
            if us.get("type") == "OnDelete":
                return current if i in pods else update
            return current if i < partition else update

        # -- bring up ordinals below replicas ----------------------------------------------------------------
        for i in range(replicas):
            p = pods.get(i)
            if p is not None and terminal(p) and not p["metadata"].get("deletionTimestamp"):
                self._delete(sts, p)  # a finished Pod of a set is replaced under the same name
                p = pods[i] = {**p, "metadata": {**p["metadata"], "deletionTimestamp": "now"}}
            if p is None:
                self._claims(sts, i)
                pods[i] = self._create(sts, i, rev_for(i))
                if ordered:
                    break
                continue
            if ordered and not _healthy(p):
                break
        else:
            # -- condemned ordinals, highest first -------------------------------------------------------------
            condemned = sorted((i for i in pods if i >= replicas), reverse=True)
            healthy_below = all(_healthy(pods[i]) for i in range(replicas) if i in pods)
            for i in condemned:
                p = pods[i]
                if p["metadata"].get("deletionTimestamp"):
                    if ordered:
                        break
                    continue
                if ordered and not healthy_below:
                    break
                self._delete(sts, p)
                if ordered:
                    break
            # -- rolling update, highest ordinal first --------------------------------------------------------
            if us.get("type", "RollingUpdate") == "RollingUpdate" and not condemned:
                uname = update["metadata"]["name"]
                live = [pods[i] for i in range(replicas) if i in pods]
                if len(live) == replicas and all(_healthy(p) for p in live):
                    for i in range(replicas - 1, partition - 1, -1):
                        p = pods[i]
                        if (p["metadata"].get("labels") or {}).get(HASH_LABEL) != uname:
                            self._delete(sts, p)
                            break
        return self._status(sts, pods, current, update, revs, replicas)

    # -- pieces -------------------------------------------------------------------------------------------------

    def _claim_names(self, sts: dict, i: int) -> list[tuple[str, dict]]:
        return [(f"{t['metadata']['name']}-{sts['metadata']['name']}-{i}", t) for t in (sts.get("spec") or {}).get("volumeClaimTemplates") or []]

    def _claims(self, sts: dict, i: int) -> None:
        ns = sts["metadata"]["namespace"]
        delete_with_set = ((sts.get("spec") or {}).get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted") == "Delete"
        for name, t in self._claim_names(sts, i):
            if self.client.get(PVC, ns, name) is not None:
                continue
            labels = {**(((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}), **((t.get("metadata") or {}).get("labels") or {})}
            pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": copy.deepcopy(t.get("spec") or {})}
            if (t.get("metadata") or {}).get("annotations"):
                pvc["metadata"]["annotations"] = dict(t["metadata"]["annotations"])
            if delete_with_set:
                pvc["metadata"]["ownerReferences"] = [owner_reference(sts, controller=False)]
            try:
                self.client.create(pvc)
                self.client.event(sts, "Normal", "SuccessfulCreate", f"create Claim {name} Pod {sts['metadata']['name']}-{i} in StatefulSet {sts['metadata']['name']} success", "statefulset-controller")
            except StatusError as e:
                if e.code != 409:
                    raise

    def _create(self, sts: dict, i: int, rev: dict) -> dict:
        name = f"{sts['metadata']['name']}-{i}"
        tmpl = template_of(rev)
        pod = pod_from_template(sts, tmpl, name=name, labels={HASH_LABEL: rev["metadata"]["name"], POD_NAME: name, POD_INDEX: str(i)})
        pspec = pod["spec"]
        pspec["hostname"] = name
        if (sts.get("spec") or {}).get("serviceName"):
            pspec["subdomain"] = sts["spec"]["serviceName"]
        claims = self._claim_names(sts, i)
        if claims:
            tnames = {t["metadata"]["name"] for _, t in claims}
            vols = [v for v in pspec.get("volumes") or [] if v.get("name") not in tnames]
            vols += [{"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": n}} for n, t in claims]
            pspec["volumes"] = vols
        try:
            out = self.client.create(pod)
        except StatusError as e:
            if e.code != 409:
                raise
            return self.client.get(POD, sts["metadata"]["namespace"], name) or pod
        self.client.event(sts, "Normal", "SuccessfulCreate", f"create Pod {name} in StatefulSet {sts['metadata']['name']} successful", "statefulset-controller")
        return out

    def _delete(self, sts: dict, pod: dict) -> None:
        try:
            self.client.delete(POD, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except StatusError as e:
            if e.code != 409:
                raise
        self.client.event(sts, "Normal", "SuccessfulDelete", f"delete Pod {pod['metadata']['name']} in StatefulSet {sts['metadata']['name']} successful", "statefulset-controller")

    def _status(self, sts: dict, pods: dict[int, dict], current: dict, update: dict, revs: list[dict], replicas: int) -> Result | None:
        spec = sts.get("spec") or {}
        mrs = int(spec.get("minReadySeconds") or 0)
        live = [p for p in pods.values() if active(p) and p["metadata"].get("uid")]
        cname, uname = current["metadata"]["name"], update["metadata"]["name"]
        rev_of = lambda p: (p["metadata"].get("labels") or {}).get(HASH_LABEL)  # noqa: E731
        st = copy.deepcopy(sts.get("status") or {})
        st.update({
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": sum(1 for p in live if ready(p)),
            "availableReplicas": sum(1 for p in live if available(p, mrs)),
            "currentReplicas": sum(1 for p in live if rev_of(p) == cname),
            "updatedReplicas": sum(1 for p in live if rev_of(p) == uname),
            "currentRevision": cname,
            "updateRevision": uname,
            "collisionCount": int(st.get("collisionCount") or 0),
        })
        if st["updatedReplicas"] == replicas and st["readyReplicas"] == replicas and len(live) == replicas:
            st["currentRevision"] = uname
            st["currentReplicas"] = st["updatedReplicas"]
        for f in ("readyReplicas", "availableReplicas", "currentReplicas", "updatedReplicas"):
            if not st[f]:
                st.pop(f)
        if st != (sts.get("status") or {}):
            self.update_status({**sts, "status": st})
        in_use = {rev_of(p) for p in pods.values()} | {st["currentRevision"], uname}
        truncate_history(self.client, sts, revs, {x for x in in_use if x})
        wait = until_available(live, mrs)
        return Result(requeue_after=wait) if wait else None


CONTROLLERS = [StatefulSetController]
