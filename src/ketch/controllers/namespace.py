"""Namespace lifecycle: a deleted namespace turns Terminating, its contents are deleted, then it goes."""

from __future__ import annotations

from ketch.machinery.errors import StatusError
from ketch.runtime import Controller, Key, Result


class NamespaceController(Controller):
    name = "namespace"
    kind = ("v1", "Namespace")

    async def reconcile(self, key: Key) -> Result | None:
        ns = self.get(key)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return None
        if (ns.get("status") or {}).get("phase") != "Terminating":
            ns = self.client.patch_status(ns, {"phase": "Terminating"})
        remaining = 0
        for rd in self.api.registry.all():
            if not rd.namespaced:
                continue
            items, _ = self.api.store.list(rd.key, key.name)
            for o in items:
                remaining += 1
                if not o["metadata"].get("deletionTimestamp"):
                    try:
                        self.api.delete(rd, key.name, o["metadata"]["name"], "Background")
                    except StatusError as e:
                        if e.code != 404:
                            raise
        if remaining:
            return Result(requeue_after=0.5)
        self.client.remove_finalizer(ns, "kubernetes")
        return None


CONTROLLERS = [NamespaceController]
