"""Endpoints controller: keeps each Service's ``Endpoints`` equal to the pods its selector picks.

For every Service with a selector, the pods in its namespace whose labels match and that have an address
are listed; ready ones go to ``addresses``, the others to ``notReadyAddresses`` (or all to ``addresses`` with
``publishNotReadyAddresses``). Each address carries the pod's IP (127.0.0.1: every pod is on this host), its
``hostname`` when the pod sits in the Service's subdomain, and a ``targetRef``. Ports are the Service's
``targetPort`` values, named ports resolved against each pod's containers, so pods that resolve a port
differently land in different subsets, as in Kubernetes. A Service without a selector leaves its Endpoints
to the user.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from ketch.kinds.meta import owner_reference
from ketch.machinery.errors import StatusError
from ketch.machinery.selectors import label_matches
from ketch.runtime import Controller, Key, Result, Watch

SERVICE = ("v1", "Service")
ENDPOINTS = ("v1", "Endpoints")
SLICE = ("discovery.k8s.io/v1", "EndpointSlice")
SERVICE_NAME = "kubernetes.io/service-name"
POD = ("v1", "Pod")
MANAGED_BY = "endpoints.ketch.dev/managed-by"


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def _resolve_port(pod: dict, target: int | str | None, fallback: int) -> int | None:
    if target is None:
        return fallback
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target:
                return int(p["containerPort"])
    return None


def slices_from_subsets(service: dict, subsets: list[dict]) -> list[dict]:
    """EndpointSlices carrying the same addresses as the Endpoints subsets (one slice per port set)."""
    out = []
    for i, sub in enumerate(subsets or [{}]):
        eps = []
        for ready, addrs in ((True, sub.get("addresses") or []), (False, sub.get("notReadyAddresses") or [])):
            for a in addrs:
                ep = {"addresses": [a["ip"]], "conditions": {"ready": ready, "serving": ready, "terminating": False}, "targetRef": a["targetRef"]}
                for k in ("hostname", "nodeName"):
                    if a.get(k):
                        ep[k] = a[k]
                eps.append(ep)
        out.append({"name": f"{service['metadata']['name']}-ketch-{i}", "endpoints": eps, "ports": sub.get("ports") or []})
    return out


def desired_subsets(service: dict, pods: Iterable[dict]) -> list[dict]:
    """The Endpoints subsets for ``service`` given the pods of its namespace (a pure function)."""
    spec = service.get("spec") or {}
    sel = spec.get("selector") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, dict] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        md, st = pod["metadata"], pod.get("status") or {}
        if md.get("deletionTimestamp") or st.get("phase") in ("Succeeded", "Failed"):
            continue
        if not label_matches({"matchLabels": sel}, md.get("labels") or {}) or not st.get("podIP"):
            continue
        ports = []
        for sp in spec.get("ports") or []:
            port = _resolve_port(pod, sp.get("targetPort"), int(sp.get("port", 0)))
            if port is None:
                continue
            ep = {"port": port, "protocol": sp.get("protocol", "TCP")}
            if sp.get("name"):
                ep["name"] = sp["name"]
            ports.append(ep)
        if spec.get("ports") and not ports:
            continue
        addr = {
            "ip": st["podIP"],
            "targetRef": {"kind": "Pod", "namespace": md.get("namespace", ""), "name": md["name"], "uid": md.get("uid")},
        }
        pspec = pod.get("spec") or {}
        if pspec.get("hostname") and pspec.get("subdomain") == service["metadata"]["name"]:
            addr["hostname"] = pspec["hostname"]
        if pspec.get("nodeName"):
            addr["nodeName"] = pspec["nodeName"]
        k = tuple(sorted((p.get("name", ""), p["port"], p["protocol"]) for p in ports))
        g = groups.setdefault(k, {"ports": ports} if ports else {})
        g.setdefault("addresses" if publish or _ready(pod) else "notReadyAddresses", []).append(addr)
    return [groups[k] for k in sorted(groups)]


class EndpointsController(Controller):
    name = "endpoints"
    kind = SERVICE
    cache_primary = True  # every Pod event is matched against the namespace's Services

    def extra_watches(self) -> list[Watch]:
        return [Watch(POD, self._services_for_pod), Watch(ENDPOINTS, lambda o: [Key(o["metadata"].get("namespace", ""), o["metadata"]["name"])]),
                Watch(SLICE, lambda o: [Key(o["metadata"].get("namespace", ""), n)] if (n := (o["metadata"].get("labels") or {}).get(SERVICE_NAME)) else [])]

    def _services_for_pod(self, pod: dict) -> Iterable[Key]:
        ns = pod["metadata"].get("namespace", "")
        labels = pod["metadata"].get("labels") or {}
        for svc in self.cached(SERVICE, ns):
            sel = (svc.get("spec") or {}).get("selector")
            if sel and label_matches({"matchLabels": sel}, labels):
                yield Key(ns, svc["metadata"]["name"])

    async def reconcile(self, key: Key) -> Result | None:
        svc = self.get(key)
        ep = self.get(key, ENDPOINTS)
        if svc is None or svc["metadata"].get("deletionTimestamp"):
            if ep is not None and (ep["metadata"].get("labels") or {}).get(MANAGED_BY):
                self.client.delete(ENDPOINTS, key.namespace, key.name)
            return None
        if not (svc.get("spec") or {}).get("selector"):
            return None
        subsets = desired_subsets(svc, self.client.list(POD, key.namespace))
        labels = {**(svc["metadata"].get("labels") or {}), MANAGED_BY: "ketch"}
        self._sync_slices(svc, subsets)
        if ep is None:
            try:
                self.client.create({
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": key.name, "namespace": key.namespace, "labels": labels, "ownerReferences": [owner_reference(svc, block=False)]},
                    "subsets": subsets,
                })
            except StatusError as e:
                if e.code != 409:
                    raise
            return None
        if (ep.get("subsets") or []) != subsets or (ep["metadata"].get("labels") or {}) != labels:
            new = copy.deepcopy(ep)
            new["subsets"] = subsets
            new["metadata"]["labels"] = labels
            self.client.update(new)
        return None

    def _sync_slices(self, svc: dict, subsets: list[dict]) -> None:
        ns = svc["metadata"]["namespace"]
        labels = {SERVICE_NAME: svc["metadata"]["name"], "endpointslice.kubernetes.io/managed-by": "ketch"}
        want = {s["name"]: s for s in slices_from_subsets(svc, subsets)}
        have = {s["metadata"]["name"]: s for s in self.client.list(SLICE, ns, labels)}
        for name in set(have) - set(want):
            self.client.delete(SLICE, ns, name)
        for name, s in want.items():
            cur = have.get(name)
            if cur is None:
                try:
                    self.client.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                                        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [owner_reference(svc, block=False)]},
                                        "endpoints": s["endpoints"], "ports": s["ports"]})
                except StatusError as e:
                    if e.code != 409:
                        raise
            elif (cur.get("endpoints") or []) != s["endpoints"] or (cur.get("ports") or []) != s["ports"]:
                new = copy.deepcopy(cur)
                new["endpoints"], new["ports"] = s["endpoints"], s["ports"]
                self.client.update(new)


CONTROLLERS = [EndpointsController]
