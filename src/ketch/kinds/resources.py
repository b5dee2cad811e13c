"""Resource quantities and what a Pod asks for: the arithmetic behind admission and the QoS class.

Shared by the kubelet (admission) and the controllers that gang-admit (training), so it lives in the
kinds layer as pure functions.

Kubernetes quantities ("500m", "2", "128Mi", "1G", "1e3") are parsed to floats in base units (cores,
bytes, devices) so that admission is a plain comparison against the node's allocatable.
"""

from __future__ import annotations

import re

_SUFFIX = {
    "": 1, "m": 1e-3, "u": 1e-6, "n": 1e-9, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_Q = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
GPU = "nvidia.com/gpu"
TRACKED = ("cpu", "memory", GPU)


def parse_quantity(v: object) -> float:
    """'500m' -> 0.5, '1Gi' -> 1073741824.0; raises ValueError naming the bad quantity."""
    if isinstance(v, int | float):
        return float(v)
    m = _Q.match(str(v).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise ValueError(f"quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {v!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def container_requests(c: dict, every: bool = False) -> dict[str, float]:
    """A container's requests; a limit without a request counts as the request, as Kubernetes defaults it.
    Only the TRACKED resources, unless ``every`` (extended resources too: what the scheduler fits)."""
    res = c.get("resources") or {}
    req = dict(res.get("limits") or {})
    req.update(res.get("requests") or {})
    out: dict[str, float] = {}
    for k in req if every else [k for k in TRACKED if k in req]:
        out[k] = quantity_or_zero(req[k])
    return out


def pod_requests(pod: dict, every: bool = False) -> dict[str, float]:
    """max(sum of containers, largest init container), plus the Pod's ``spec.overhead`` (its RuntimeClass's),
    per resource: what the pod holds while it runs, as kube-scheduler and the kubelet's admission count it.
    TRACKED resources (always present, 0 when not asked for), or with ``every`` each resource named."""
    spec = pod.get("spec") or {}
    total: dict[str, float] = {k: 0.0 for k in TRACKED}
    for c in spec.get("containers") or []:
        for k, v in container_requests(c, every).items():
            total[k] = total.get(k, 0.0) + v
    for c in spec.get("initContainers") or []:
        for k, v in container_requests(c, every).items():
            total[k] = max(total.get(k, 0.0), v)
    for k, v in (spec.get("overhead") or {}).items():
        if every or k in TRACKED:
            total[k] = total.get(k, 0.0) + quantity_or_zero(v)
    return total


def quantity_or_zero(v: object) -> float:
    try:
        return parse_quantity(v)
    except ValueError:
        return 0.0


def memory_limit(c: dict) -> float | None:
    lim = ((c.get("resources") or {}).get("limits") or {}).get("memory")
    try:
        return parse_quantity(lim) if lim is not None else None
    except ValueError:
        return None


def qos_class(pod: dict) -> str:
    """Guaranteed when every container's cpu and memory limits equal its requests, BestEffort when nothing
    is asked for, Burstable otherwise."""
    cs = (pod.get("spec") or {}).get("containers") or []
    any_set = False
    guaranteed = True
    for c in cs + ((pod.get("spec") or {}).get("initContainers") or []):
        res = c.get("resources") or {}
        lim, req = res.get("limits") or {}, res.get("requests") or {}
        if lim or req:
            any_set = True
        for k in ("cpu", "memory"):
            if k not in lim or (k in req and quantity_or_zero(req[k]) != quantity_or_zero(lim[k])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def format_quantity(resource: str, v: float) -> str:
    if resource == "memory":
        return f"{int(v / 2**10)}Ki" if v % 2**10 == 0 else str(int(v))
    if resource == "cpu" and v != int(v):
        return f"{int(v * 1000)}m"
    return str(int(v))
