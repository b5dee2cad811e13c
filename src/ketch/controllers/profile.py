"""Kubeflow Profiles: a cluster-scoped ``kubeflow.org/v1 Profile`` owns the namespace of its name.

For each Profile the controller makes (owned by the Profile, so deleting it takes them away), as Kubeflow's
profile controller does:
- the Namespace, annotated ``owner: <owner name>``;
- RoleBinding ``namespaceAdmin``: the owner (``spec.owner``, a User) gets ClusterRole ``kubeflow-admin``,
  annotated ``user``/``role: admin`` as KFAM reads it;
- ServiceAccounts ``default-editor`` and ``default-viewer``, bound to ``kubeflow-edit`` and ``kubeflow-view``;
- ResourceQuota ``kf-resource-quota`` from ``spec.resourceQuotaSpec`` (deleted when the spec drops it).

A namespace that exists already and is not this Profile's is left alone: the Profile's status says so.
"""

from __future__ import annotations

from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result

PROFILE = ("kubeflow.org/v1", "Profile")
NS = ("v1", "Namespace")
RB = ("rbac.authorization.k8s.io/v1", "RoleBinding")
SA = ("v1", "ServiceAccount")
QUOTA = ("v1", "ResourceQuota")
RBAC = "rbac.authorization.k8s.io"
QUOTA_NAME = "kf-resource-quota"


def owner_ref(p: dict) -> dict:
    return {"apiVersion": "kubeflow.org/v1", "kind": "Profile", "name": p["metadata"]["name"], "uid": p["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


def binding(p: dict, name: str, role: str, subject: dict, annotations: dict | None = None) -> dict:
    ns = p["metadata"]["name"]
    return {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": [owner_ref(p)], "annotations": annotations or {}},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role}, "subjects": [subject]}


class ProfileController(Controller):
    name = "profile"
    kind = PROFILE
    owns = [NS, RB, SA, QUOTA]

    async def reconcile(self, key: Key) -> Result | None:
        p = self.get(key)
        if p is None or p["metadata"].get("deletionTimestamp"):
            return None
        ns_name = p["metadata"]["name"]
        owner = ((p.get("spec") or {}).get("owner") or {})
        ns = self.client.get(NS, "", ns_name)
        if ns is None:
            ns = self.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": ns_name, "annotations": {"owner": owner.get("name", "")}, "ownerReferences": [owner_ref(p)],
                "labels": {"app.kubernetes.io/part-of": "kubeflow-profile", "katib.kubeflow.org/metrics-collector-injection": "enabled"}}})
        elif not any(r.get("uid") == p["metadata"]["uid"] for r in ns["metadata"].get("ownerReferences") or []):
            return self._status(p, "False", "NamespaceExists", f'namespace "{ns_name}" exists and is not owned by this Profile')
        if ns["metadata"].get("deletionTimestamp"):
            return Result(requeue_after=0.5)
        self._ensure(binding(p, "namespaceAdmin", "kubeflow-admin",
                             {"apiGroup": RBAC, "kind": owner.get("kind") or "User", "name": owner.get("name", "")},
                             {"user": owner.get("name", ""), "role": "admin"}))
        for sa, role in (("default-editor", "kubeflow-edit"), ("default-viewer", "kubeflow-view")):
            self._ensure({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns_name, "ownerReferences": [owner_ref(p)]}})
            self._ensure(binding(p, sa, role, {"kind": "ServiceAccount", "name": sa, "namespace": ns_name}))
        rq = (p.get("spec") or {}).get("resourceQuotaSpec")
        cur = self.client.get(QUOTA, ns_name, QUOTA_NAME)
        if rq:
            want = {"apiVersion": "v1", "kind": "ResourceQuota",
                    "metadata": {"name": QUOTA_NAME, "namespace": ns_name, "ownerReferences": [owner_ref(p)]}, "spec": rq}
            if cur is None:
                self._ensure(want)
            elif cur.get("spec") != rq:
                cur["spec"] = rq
                self.client.update(cur)
        elif cur is not None and any(r.get("uid") == p["metadata"]["uid"] for r in cur["metadata"].get("ownerReferences") or []):
            self.client.delete(QUOTA, ns_name, QUOTA_NAME)
        return self._status(p, "True", "Ready", "")

    def _ensure(self, obj: dict) -> None:
        ref = (obj["apiVersion"], obj["kind"])
        if self.client.get(ref, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]) is None:
            try:
                self.client.create(obj)
            except StatusError as e:
                if e.code != 409:
                    raise

    def _status(self, p: dict, ok: str, reason: str, message: str) -> Result | None:
        cond = {"type": "Ready", "status": ok, "reason": reason, "message": message}
        conds = (p.get("status") or {}).get("conditions") or []
        if not any(all(c.get(k) == v for k, v in cond.items()) for c in conds):
            p["status"] = {**(p.get("status") or {}), "conditions": [cond]}
            self.update_status(p)
        return None


CONTROLLERS = [ProfileController]
