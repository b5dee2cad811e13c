"""What the pod-template controllers (ReplicaSet, Deployment, StatefulSet, DaemonSet) share: reading a
workload's Pods from the store, Pod readiness and availability, Pods stamped from a template, template
hashes, and the order in which surplus Pods are chosen for deletion.

Pods are read from the store through the label index (the workload's equality labels) rather than from an
informer, so a reconcile right after a create sees what it created: no "expectations" bookkeeping is
needed to keep a lagging cache from creating twice.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib

import orjson

from ketch.kinds.meta import get_condition, owner_reference, parse_time
from ketch.machinery.client import Client
from ketch.machinery.selectors import label_matches

POD = ("v1", "Pod")
SAFE = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet Kubernetes' generated names use: no vowels, no 0/1/3


def terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def active(pod: dict) -> bool:
    """Counted toward replicas: neither finished nor being deleted."""
    return not terminal(pod) and not pod["metadata"].get("deletionTimestamp")


def ready(pod: dict) -> bool:
    c = get_condition(pod, "Ready")
    return bool(c) and c.get("status") == "True"


def ready_since(pod: dict) -> dt.datetime | None:
    c = get_condition(pod, "Ready")
    if not c or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime")) or dt.datetime.now(dt.UTC)


def available(pod: dict, min_ready_seconds: int, at: dt.datetime | None = None) -> bool:
    """Ready for at least ``minReadySeconds``, as Kubernetes' IsPodAvailable."""
    since = ready_since(pod)
    if since is None or not active(pod):
        return False
    if not min_ready_seconds:
        return True
    return since + dt.timedelta(seconds=min_ready_seconds) <= (at or dt.datetime.now(dt.UTC))


def until_available(pods: list[dict], min_ready_seconds: int) -> float | None:
    """Seconds until the next ready-but-not-yet-available Pod becomes available (for a requeue)."""
    if not min_ready_seconds:
        return None
    now = dt.datetime.now(dt.UTC)
    waits = [
        (since + dt.timedelta(seconds=min_ready_seconds) - now).total_seconds()
        for p in pods if active(p) and (since := ready_since(p)) is not None
    ]
    waits = [w for w in waits if w > 0]
    return min(waits) + 0.05 if waits else None


def controlled_by(obj: dict, owner: dict) -> bool:
    uid = owner["metadata"]["uid"]
    return any(o.get("uid") == uid and o.get("controller") for o in obj["metadata"].get("ownerReferences") or [])


def owned_pods(client: Client, owner: dict, selector: dict | None) -> list[dict]:
    """The Pods ``owner`` controls that its selector still selects (read through the label index)."""
    ml = (selector or {}).get("matchLabels") or None
    pods = client.list(POD, owner["metadata"]["namespace"], ml)
    return [p for p in pods if controlled_by(p, owner) and label_matches(selector, p["metadata"].get("labels") or {})]


def pod_from_template(owner: dict, template: dict, name: str | None = None, labels: dict | None = None) -> dict:
    """A Pod stamped from a pod template: its labels and annotations, ``owner`` as controller."""
    tmpl = copy.deepcopy(template or {})
    tmd = tmpl.get("metadata") or {}
    md: dict = {
        "namespace": owner["metadata"]["namespace"],
        "labels": {**(tmd.get("labels") or {}), **(labels or {})},
        "ownerReferences": [owner_reference(owner)],
    }
    if tmd.get("annotations"):
        md["annotations"] = dict(tmd["annotations"])
    if tmd.get("finalizers"):
        md["finalizers"] = list(tmd["finalizers"])
    if name:
        md["name"] = name
    else:
        md["generateName"] = f"{owner['metadata']['name']}-"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": tmpl.get("spec") or {}}


def template_hash(template: dict, collision_count: int | None = None) -> str:
    """A short stable hash of a pod template (plus the collision count), spelled in the safe alphabet:
    the ``pod-template-hash`` of a Deployment's ReplicaSets and the revision names of StatefulSets."""
    data = orjson.dumps(template, option=orjson.OPT_SORT_KEYS)
    if collision_count:
        data += str(collision_count).encode()
    n = int.from_bytes(hashlib.sha256(data).digest()[:5], "big")
    out = ""
    while n:
        n, r = divmod(n, len(SAFE))
        out += SAFE[r]
    return out or SAFE[0]


def deletion_rank(pod: dict) -> tuple:
    """Sort key: the Pods to delete first come first (Kubernetes' ActivePods ranking): unscheduled before
    scheduled, Pending before Running, not ready before ready, ready for less time first, more restarts
    first, newer first."""
    st = pod.get("status") or {}
    phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(st.get("phase", "Pending"), 0)
    since = ready_since(pod)
    restarts = sum(int(cs.get("restartCount", 0)) for cs in st.get("containerStatuses") or [])
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    return (
        1 if (pod.get("spec") or {}).get("nodeName") else 0,
        phase,
        1 if since else 0,
        -(since.timestamp()) if since else 0,
        -restarts,
        -(created.timestamp()) if created else 0,
        pod["metadata"]["name"],
    )
