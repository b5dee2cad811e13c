"""Pod-level facts the training controllers need: phases, exit codes, restarts, requests, gang admission."""

from __future__ import annotations

from ketch.kinds.resources import TRACKED as GANG_RESOURCES
from ketch.kinds.resources import parse_quantity as quantity
from ketch.kinds.resources import pod_requests as _pod_requests
from ketch.machinery.client import Client


def phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def exit_code(pod: dict, container: str | None = None) -> int | None:
    """The exit code that decided a failed pod: the named container's, else the first non-zero one."""
    codes = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        t = (cs.get("state") or {}).get("terminated")
        if t is None:
            continue
        if container and cs.get("name") == container:
            return int(t.get("exitCode", 0))
        codes.append(int(t.get("exitCode", 0)))
    nz = [c for c in codes if c != 0]
    return nz[0] if nz else (codes[0] if codes else None)


def restart_count(pod: dict) -> int:
    st = pod.get("status") or {}
    return sum(int(cs.get("restartCount", 0)) for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []))


def waiting_to_restart(pod: dict) -> bool:
    """A container the kubelet is about to start again (OnFailure/Always after a crash)."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        if int(cs.get("restartCount", 0)) > 0 and "running" not in state:
            return True
        if (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff":
            return True
    return False


def pod_requests(spec: dict) -> dict[str, float]:
    """What a pod spec holds while it runs, by the same rule the kubelet admits with (zeros dropped)."""
    return {k: v for k, v in _pod_requests({"spec": spec}).items() if v}


def gang_fits(client: Client, need: dict[str, float], exclude_uid: str) -> tuple[bool, str]:
    """Whether every replica of a job fits at once on the registered nodes, next to what already runs.

    Gang admission as the operators get it from volcano/scheduler-plugins: all replicas or none, so a
    job never holds half its workers while waiting for the rest. With no Node registered (no kubelet),
    there is nothing to check against and the job is admitted.
    """
    nodes = client.list(("v1", "Node"))
    if not nodes or not need:
        return True, ""
    free: dict[str, float] = {}
    for n in nodes:
        conds = (n.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") != "True" for c in conds):
            continue  # a lost node (NotReady) holds no room
        alloc = (n.get("status") or {}).get("allocatable") or (n.get("status") or {}).get("capacity") or {}
        for k in GANG_RESOURCES:
            if k in alloc:
                free[k] = free.get(k, 0.0) + quantity(alloc[k])
    for p in client.list(("v1", "Pod")):
        if phase(p) in ("Succeeded", "Failed"):
            continue
        if any(o.get("uid") == exclude_uid for o in p["metadata"].get("ownerReferences") or []):
            continue
        for k, v in pod_requests(p.get("spec") or {}).items():
            if k in free:
                free[k] -= v
    # Only resources the nodes report are checked; nvidia.com/gpu on a node without GPUs reports 0.
    short = [f"{k}: needs {need[k]:g}, {max(free.get(k, 0.0), 0):g} free" for k in need
             if (k in free or k == "nvidia.com/gpu") and need[k] > free.get(k, 0.0) + 1e-9]
    return (not short), "; ".join(short)
