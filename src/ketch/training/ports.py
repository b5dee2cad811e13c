"""Ports for replicas: every pod runs on this host, so each replica needs its own free port (runtime.ports).

The allocated port is recorded in the replica's Service (``spec.ports[0].port``), which the engine creates
before the pods; a restarted ketch reads it back from there, so the wiring survives without hidden state.
"""

from __future__ import annotations

from ketch.config import kubelet_kind, pod_network
from ketch.kinds.endpoints import service_host_ref


def peer_host(service: str) -> str:
    """How a replica names a peer: its headless Service's name where Pods have addresses of their own and
    resolve Service names (KETCH_POD_NETWORK=netns, as the operators do on a cluster); on the Ray kubelet,
    whose Pods are on several machines but resolve no Service names, the Service's address as a
    Kubernetes service-link variable, ``$(<SERVICE>_SERVICE_HOST)``, which that kubelet fills in at the
    container's start with the IP of the node running the peer's Pod; else 127.0.0.1 (the peer's port is
    its own on the shared host network).

    The branch on the kubelet stays: only the Ray kubelet fills in service-link variables (the local one sets
    none, and Kubernetes sets none for the headless Services the operators make), so on the others the
    reference would stay unexpanded."""
    if kubelet_kind() == "ray":
        return service_host_ref(service)
    return service if pod_network() == "netns" else "127.0.0.1"


def service_ports(services: list[dict]) -> set[int]:
    out: set[int] = set()
    for s in services:
        for p in (s.get("spec") or {}).get("ports") or []:
            if isinstance(p.get("port"), int):
                out.add(p["port"])
    return out
