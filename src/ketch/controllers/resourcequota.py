"""ResourceQuota status: ``status.hard`` and ``status.used`` kept current as Pods come and go (admission in
``machinery/quota.py`` counts from the Pods themselves; this is what ``kubectl describe quota`` shows)."""

from __future__ import annotations

from ketch.machinery.quota import quota_status
from ketch.runtime import Controller, Key, Result, Watch

QUOTA = ("v1", "ResourceQuota")


class ResourceQuotaController(Controller):
    name = "resourcequota"
    kind = QUOTA
    workers = 1

    def extra_watches(self) -> list[Watch]:
        def to_quotas(pod: dict) -> list[Key]:
            ns = pod["metadata"].get("namespace", "")
            return [Key(ns, q["metadata"]["name"]) for q in self.api.store.list("/resourcequotas", ns)[0]]
        return [Watch(("v1", "Pod"), to_quotas)]

    async def reconcile(self, key: Key) -> Result | None:
        q = self.get(key)
        if q is None:
            return None
        st = quota_status(self.api.store, q)
        if (q.get("status") or {}) != st:
            q["status"] = st
            self.update_status(q)
        return None


CONTROLLERS = [ResourceQuotaController]
