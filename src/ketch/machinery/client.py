"""The in-process client controllers use: the Api with kinds named by (apiVersion, kind), plus Events.

It is the same code path the HTTP server uses, minus the HTTP, so a controller behaves as an operator
talking to a real API server would (optimistic concurrency, status subresource, finalizers).
"""

from __future__ import annotations

import copy
import logging
import threading

from ketch.kinds.meta import generate_suffix, now
from ketch.machinery.api import Api, Options
from ketch.machinery.errors import StatusError
from ketch.machinery.patch import MERGE

log = logging.getLogger(__name__)
KindRef = tuple[str, str]  # (apiVersion, kind)


class NotFound(Exception):
    pass


class Client:
    def __init__(self, api: Api, manager: str = "ketch") -> None:
        self.api = api
        self.manager = manager
        self._events: dict[tuple, str] = {}
        self._ev_lock = threading.Lock()

    def _opts(self) -> Options:
        return Options(field_manager=self.manager, field_validation="Ignore")

    def rd(self, ref: KindRef):  # noqa: ANN201
        return self.api.rd(*ref)

    def get(self, ref: KindRef, ns: str, name: str) -> dict | None:
        return self.api.try_get(self.rd(ref), ns, name)

    def list(self, ref: KindRef, ns: str | None = None, labels: dict[str, str] | str | None = None, fields: str | None = None) -> list[dict]:
        sel = labels if isinstance(labels, str) or labels is None else ",".join(f"{k}={v}" for k, v in labels.items())
        return self.api.list(self.rd(ref), ns, label_selector=sel, field_selector=fields)["items"]

    def create(self, obj: dict, ns: str | None = None) -> dict:
        rd = self.api.rd(obj["apiVersion"], obj["kind"])
        return self.api.create(rd, ns or obj.get("metadata", {}).get("namespace", ""), obj, rd.storage_version if "/" not in obj["apiVersion"] else obj["apiVersion"].split("/")[-1], self._opts())

    def update(self, obj: dict) -> dict:
        rd = self.api.rd(obj["apiVersion"], obj["kind"])
        md = obj["metadata"]
        return self.api.update(rd, md.get("namespace", ""), md["name"], obj, obj["apiVersion"].split("/")[-1], None, self._opts())

    def update_status(self, obj: dict) -> dict:
        """Write ``obj['status']`` through the status subresource (409 if the object moved on)."""
        rd = self.api.rd(obj["apiVersion"], obj["kind"])
        md = obj["metadata"]
        return self.api.update(rd, md.get("namespace", ""), md["name"], obj, obj["apiVersion"].split("/")[-1], "status", self._opts())

    def patch(self, ref: KindRef, ns: str, name: str, patch: dict, status: bool = False) -> dict:
        rd = self.rd(ref)
        return self.api.patch(rd, ns, name, MERGE, patch, ref[0].split("/")[-1], "status" if status else None, self._opts())

    def patch_status(self, obj: dict, status: dict) -> dict:
        md = obj["metadata"]
        return self.patch((obj["apiVersion"], obj["kind"]), md.get("namespace", ""), md["name"], {"status": status}, status=True)

    def delete(self, ref: KindRef, ns: str, name: str, propagation: str | None = None, grace: int | None = None) -> dict | None:
        try:
            return self.api.delete(self.rd(ref), ns, name, propagation, grace)
        except StatusError as e:
            if e.code == 404:
                return None
            raise

    def remove_finalizer(self, obj: dict, finalizer: str) -> dict | None:
        fins = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        md = obj["metadata"]
        try:
            return self.api.patch(
                self.api.rd(obj["apiVersion"], obj["kind"]), md.get("namespace", ""), md["name"], "application/json-patch+json",
                [{"op": "test", "path": "/metadata/resourceVersion", "value": md["resourceVersion"]}, {"op": "replace", "path": "/metadata/finalizers", "value": fins}],
                None, None, self._opts(),
            )
        except StatusError as e:
            if e.code == 404:
                return None
            raise

    def add_finalizer(self, obj: dict, finalizer: str) -> dict:
        fins = list(obj["metadata"].get("finalizers") or [])
        if finalizer in fins:
            return obj
        fins.append(finalizer)
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = fins
        return self.update(new)

    def event(self, obj: dict, type_: str, reason: str, message: str, component: str | None = None) -> None:
        """Record an Event about ``obj``; repeats of the same reason and message bump its count."""
        md = obj["metadata"]
        ns = md.get("namespace") or "default"
        key = (md.get("uid"), type_, reason, message)
        rd = self.api.rd("v1", "Event")
        ts = now()
        try:
            with self._ev_lock:
                name = self._events.get(key)
            if name:
                ev = self.api.try_get(rd, ns, name)
                if ev is not None:
                    ev["count"] = int(ev.get("count", 1)) + 1
                    ev["lastTimestamp"] = ts
                    self.api.update(rd, ns, name, ev)
                    return
            ev = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{md['name']}.{generate_suffix(10)}", "namespace": ns},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion"),
                    "kind": obj.get("kind"),
                    "name": md["name"],
                    "namespace": md.get("namespace", ""),
                    "uid": md.get("uid"),
                    "resourceVersion": md.get("resourceVersion"),
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "count": 1,
                "firstTimestamp": ts,
                "lastTimestamp": ts,
                "source": {"component": component or self.manager},
                "reportingComponent": component or self.manager,
            }
            created = self.api.create(rd, ns, ev)
            with self._ev_lock:
                if len(self._events) > 10_000:
                    self._events.clear()
                self._events[key] = created["metadata"]["name"]
        except Exception:  # events are best effort, never fail a reconcile
            log.debug("could not record event %s on %s", reason, md.get("name"), exc_info=True)


def conditions_true(obj: dict, ctype: str) -> bool:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c.get("status") == "True"
    return False


__all__ = ["Client", "KindRef", "NotFound", "conditions_true"]
