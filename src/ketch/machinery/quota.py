"""Pod admission for ResourceQuota and LimitRange, as kube-apiserver's admission plugins do it.

- LimitRange: a container without requests/limits gets its namespace's ``defaultRequest``/``default``
  (type Container).
- ResourceQuota: a new Pod is refused with 403 when it would take the namespace past any ``spec.hard`` of a
  quota (``pods``, ``requests.cpu``/``cpu``, ``requests.memory``/``memory``, ``limits.*``,
  ``requests.nvidia.com/gpu``), in Kubernetes' words: ``exceeded quota: <name>, requested: ..., used: ...,
  limited: ...``; and when it names no value for a compute resource a quota limits (``must specify``).

Usage is counted from the Pods themselves (those not Succeeded or Failed), so it never drifts.
"""

from __future__ import annotations

from ketch.kinds.builtin.quota import format_quantity, pod_usage
from ketch.kinds.definitions import FieldError
from ketch.kinds.resources import parse_quantity
from ketch.machinery.errors import StatusError

QUOTA_KEY = "/resourcequotas"
LIMITS_KEY = "/limitranges"
PODS_KEY = "/pods"


def namespace_usage(store, ns: str, skip: str = "") -> dict[str, float]:  # noqa: ANN001
    used: dict[str, float] = {}
    for p in store.list(PODS_KEY, ns)[0]:
        if p["metadata"]["name"] == skip or (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for k, v in pod_usage(p).items():
            used[k] = used.get(k, 0.0) + v
    return used


def _apply_limit_ranges(store, pod: dict, ns: str) -> None:  # noqa: ANN001
    for lr in store.list(LIMITS_KEY, ns)[0]:
        for item in (lr.get("spec") or {}).get("limits") or []:
            if item.get("type", "Container") != "Container":
                continue
            for c in (pod.get("spec") or {}).get("containers") or []:
                res = c.setdefault("resources", {})
                for src, dst in (("defaultRequest", "requests"), ("default", "limits")):
                    for k, v in (item.get(src) or {}).items():
                        res.setdefault(dst, {}).setdefault(k, v)
                for k, v in (item.get("default") or {}).items():  # a default limit is also the request, as Kubernetes does
                    res.setdefault("requests", {}).setdefault(k, v)


def admitter(store):  # noqa: ANN001, ANN201
    """The admission function for Pods: ``fn(pod, old) -> []`` raising 403 over quota."""

    def admit(pod: dict, old: dict | None) -> list[FieldError]:
        if old is not None:
            return []
        ns, name = pod["metadata"].get("namespace", ""), pod["metadata"].get("name", "")
        _apply_limit_ranges(store, pod, ns)
        quotas = store.list(QUOTA_KEY, ns)[0]
        if not quotas:
            return []
        want = pod_usage(pod)
        used = namespace_usage(store, ns, skip=name)
        for q in sorted(quotas, key=lambda o: o["metadata"]["name"]):
            hard = (q.get("spec") or {}).get("hard") or {}
            qname = q["metadata"]["name"]
            missing = [k for k in sorted(hard) if (k.startswith(("requests.", "limits.")) or k in ("cpu", "memory")) and k not in want]
            if missing:
                raise StatusError(403, "Forbidden", f'pods "{name}" is forbidden: failed quota: {qname}: must specify '
                                  + ",".join(missing), {"name": name, "kind": "pods"})
            over = []
            for k in sorted(hard):
                if k not in want:
                    continue
                try:
                    limit = parse_quantity(hard[k])
                except ValueError:
                    continue
                if used.get(k, 0.0) + want[k] > limit + 1e-9:
                    over.append(k)
            if over:
                def fmt(vals: dict[str, float], keys: list[str]) -> str:
                    return ",".join(f"{k}={format_quantity(k, vals.get(k, 0.0))}" for k in keys)
                limited = ",".join(f"{k}={hard[k]}" for k in over)
                raise StatusError(403, "Forbidden",
                                  f'pods "{name}" is forbidden: exceeded quota: {qname}, requested: {fmt(want, over)}, '
                                  f"used: {fmt(used, over)}, limited: {limited}", {"name": name, "kind": "pods"})
        return []

    return admit


def quota_status(store, quota: dict) -> dict:  # noqa: ANN001
    """The status a ResourceQuota should show: ``hard`` as asked, ``used`` for the same keys."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    used = namespace_usage(store, quota["metadata"].get("namespace", ""))
    return {"hard": dict(hard), "used": {k: format_quantity(k, used.get(k, 0.0)) for k in hard}}
