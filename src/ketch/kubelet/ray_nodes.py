"""A Ray node as a Kubernetes Node: its name, labels, capacity, addresses and readiness, from one entry of
``ray.nodes()`` (a dict; no Ray import here, so the translation is testable on plain data).

- **name**: the Ray node's label ``ketch.dev/node-name`` when it has one (``ray start --labels`` or
  ``ray.init(labels=...)``: a name that survives the node's restart), else ``<hostname>-<first 6 hex digits
  of the node id>``, made a valid DNS label.
- **labels**: ``kubernetes.io/hostname`` (the Node's name: each Ray node is its own host to the
  scheduler, even several on one machine), os/arch, ``ketch.dev/kubelet=ray``, ``ray.io/node-id``,
  ``node-role.kubernetes.io/control-plane`` on the head node, every Ray node label that is a valid
  Kubernetes label, and one label per custom resource, ``ray.io/resource.<name>=<amount>`` (a node
  started with ``resources={"zone-a": 1}`` is selected with ``ray.io/resource.zone-a: "1"``).
- **capacity** = allocatable: ``cpu`` (Ray's CPU), ``memory``, ``nvidia.com/gpu`` (Ray's GPU), ``pods``,
  and each custom resource as the extended resource ``ray.io/<name>``, which Pods may request.
- **addresses**: InternalIP = the node's IP (NodeManagerAddress), Hostname = its host's name.
- **Ready**: True while Ray says the node is alive; once dead, Unknown (``NodeStatusUnknown``) with the
  ``node.kubernetes.io/unreachable`` NoSchedule and NoExecute taints, as the node lifecycle controller
  marks a Node that stopped reporting.
"""

from __future__ import annotations

import platform
import re

from ketch.kinds.meta import now
from ketch.kinds.resources import GPU
from ketch.kubelet.base import node_object
from ketch.kubelet.scheduling import UNREACHABLE_TAINT

NAME_LABEL = "ketch.dev/node-name"
NODE_ID_LABEL = "ray.io/node-id"
RESOURCE_LABEL = "ray.io/resource."
EXTENDED = "ray.io/"
_BUILTIN = {"CPU", "GPU", "memory", "object_store_memory"}
_NAME_PART = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def valid_label(key: str, value: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123.match(prefix)):
        return False
    return bool(_NAME_PART.match(name)) and len(value) <= 63 and bool(_VALUE.match(value))


def _dns_label(s: str) -> str:
    s = re.sub(r"[^a-z0-9-]", "-", s.lower()).strip("-")
    return s[:63].strip("-") or "ray-node"


def node_id(entry: dict) -> str:
    return str(entry.get("NodeID") or "")


def node_name(entry: dict) -> str:
    labels = entry.get("Labels") or {}
    if labels.get(NAME_LABEL):
        return _dns_label(str(labels[NAME_LABEL]))
    host = str(entry.get("NodeManagerHostname") or entry.get("NodeManagerAddress") or "ray").split(".")[0]
    return _dns_label(f"{_dns_label(host)[:56]}-{node_id(entry)[:6]}")


def alive(entry: dict) -> bool:
    return bool(entry.get("Alive", entry.get("alive")))


def ip(entry: dict) -> str:
    return str(entry.get("NodeManagerAddress") or "127.0.0.1")


def reachable_api_host(bind: str, node_ip: str) -> str | None:
    """Where Pods on other machines reach ketch, from the address it listens on (``ketch up --host``):
    None while it listens on loopback only (its Pods keep 127.0.0.1, which reaches it from its own machine
    alone), the IP of the Ray node ketch runs on when it listens on every interface, else that address."""
    from ketch.machinery.hosts import host_name, is_loopback

    name = host_name(bind or "")
    if is_loopback(name):
        return None
    if name in ("", "0.0.0.0", "::"):
        return None if is_loopback(node_ip) else node_ip
    return name


def is_head(entry: dict) -> bool:
    return "node:__internal_head__" in (entry.get("Resources") or {})


def custom_resources(entry: dict) -> dict[str, float]:
    """The node's own resources (``zone-a``), not Ray's built-in ones or its per-node markers."""
    out = {}
    for k, v in (entry.get("Resources") or {}).items():
        if k in _BUILTIN or ":" in k or not _NAME_PART.match(k):
            continue
        out[k] = float(v)
    return out


def _amount(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def labels(entry: dict, cluster: str) -> dict[str, str]:
    name = node_name(entry)
    out = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
        "ketch.dev/kubelet": "ray",
        "ray.io/cluster": cluster if valid_label("ray.io/cluster", cluster) else "joined",
        NODE_ID_LABEL: node_id(entry),
    }
    if is_head(entry):
        out["node-role.kubernetes.io/control-plane"] = ""
    for k, v in (entry.get("Labels") or {}).items():
        if k not in out and valid_label(str(k), str(v)):
            out[str(k)] = str(v)
    for k, v in custom_resources(entry).items():
        out[RESOURCE_LABEL + k] = _amount(v)
    return out


def capacity(entry: dict, pods: float) -> dict[str, float]:
    res = entry.get("Resources") or {}
    out = {"cpu": float(res.get("CPU", 0)), "memory": float(res.get("memory", 0)), GPU: float(res.get("GPU", 0)), "pods": pods}
    for k, v in custom_resources(entry).items():
        out[EXTENDED + k] = v
    return out


def addresses(entry: dict) -> list[dict]:
    out = [{"type": "InternalIP", "address": ip(entry)}]
    host = entry.get("NodeManagerHostname")
    if host:
        out.append({"type": "Hostname", "address": str(host)})
    return out


def unreachable_taints() -> list[dict]:
    ts = now()
    return [{"key": UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": ts},
            {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": ts}]


def to_node(entry: dict, cluster: str, pods: float = 1000) -> dict:
    """The Node object for a ``ray.nodes()`` entry (its spec.taints are ketch's only: the caller merges
    them with those users set)."""
    nid = node_id(entry)
    if alive(entry):
        ready = ("True", "KubeletReady", f"ketch ray kubelet is posting ready status (Ray node {nid[:12]} is alive)")
        taints = None
    else:
        why = entry.get("DeathReasonMessage") or "it stopped reporting to the cluster"
        ready = ("Unknown", "NodeStatusUnknown", f"Ray reports node {nid[:12]} dead: {why}")
        taints = unreachable_taints()
    cap = capacity(entry, pods)
    return node_object(node_name(entry), labels(entry, cluster), cap, cap, addresses(entry), "ray", ready, taints, machine_id=nid)
