"""What every namespace holds from the start, as Kubernetes' serviceaccounts-controller and
root-ca-cert-publisher provide it: the ``default`` ServiceAccount and the ``kube-root-ca.crt`` ConfigMap.

Clients poll for them (the kubernetes client's e2e tests wait for ``default`` before creating Pods, and
projected service-account volumes read ``kube-root-ca.crt``). Both are recreated when deleted. ketch serves
plain HTTP on loopback, so there is no cluster CA to publish: ``ca.crt`` is empty until ketch has one.
"""

from __future__ import annotations

from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result, Watch

NS = ("v1", "Namespace")
SA = ("v1", "ServiceAccount")
CM = ("v1", "ConfigMap")
ROOT_CA = "kube-root-ca.crt"


def _to_namespace(name: str):  # noqa: ANN202
    def m(obj: dict) -> list[Key]:
        md = obj["metadata"]
        return [Key("", md["namespace"])] if md["name"] == name else []

    return m


class NamespaceDefaultsController(Controller):
    name = "namespace-defaults"
    kind = NS

    def extra_watches(self) -> list[Watch]:
        # Only deletions of the two objects matter: their other events are dropped by the predicate.
        never = lambda old, new: False  # noqa: E731
        return [Watch(SA, _to_namespace("default"), never), Watch(CM, _to_namespace(ROOT_CA), never)]

    async def reconcile(self, key: Key) -> Result | None:
        ns = self.get(key)
        if ns is None or ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
            return None
        name = key.name
        self._ensure({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}})
        self._ensure({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ROOT_CA, "namespace": name},
            "data": {"ca.crt": ""},
        })
        return None

    def _ensure(self, obj: dict) -> None:
        md = obj["metadata"]
        if self.client.get((obj["apiVersion"], obj["kind"]), md["namespace"], md["name"]) is not None:
            return
        try:
            self.client.create(obj)
        except StatusError as e:
            if e.code not in (409, 403):  # exists already, or the namespace began terminating meanwhile
                raise


CONTROLLERS = [NamespaceDefaultsController]
