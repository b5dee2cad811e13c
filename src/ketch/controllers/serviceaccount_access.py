"""What a namespace's Pods may do by default: a RoleBinding ``ketch-default-edit`` in every namespace gives
its ``default`` ServiceAccount (what a Pod runs as unless it names another) the ClusterRole
``kubeflow-edit`` there, as Kubeflow's ``default-editor`` account has in a Profile. So Pods (pipeline tasks,
trials pushing metrics, model servers reading the registry, kubectl inside a Pod) work within their
namespace, and nowhere else unless a binding says so. Any other ServiceAccount (``default-viewer``, one you
make) gets only what its own bindings give.

It is made once per namespace (the namespace is annotated when it is): delete the binding to take the
default away, and it stays deleted.
"""

from __future__ import annotations

from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result

BINDING = "ketch-default-edit"
MARK = "rbac.ketch.io/default-edit"
RB = ("rbac.authorization.k8s.io/v1", "RoleBinding")


def binding(ns: str) -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": BINDING, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "ketch"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}


class ServiceAccountAccessController(Controller):
    name = "serviceaccount-access"
    kind = ("v1", "Namespace")

    async def reconcile(self, key: Key) -> Result | None:
        ns = self.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp") or (ns["metadata"].get("annotations") or {}).get(MARK):
            return None
        try:
            self.client.create(binding(key.name))
        except StatusError as e:
            if e.code != 409:
                raise
        self.client.patch(("v1", "Namespace"), "", key.name, {"metadata": {"annotations": {MARK: "created"}}})
        return None


CONTROLLERS = [ServiceAccountAccessController]
