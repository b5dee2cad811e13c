"""Pure helpers to turn a Service's Endpoints into host:port pairs.

Any component (training operators handing out ``<job>-master-0:23456``, tuning, pipelines) reads the
``Endpoints`` object through the API and calls these; nothing here touches server state. Addresses are
the Pods' IPs: 127.0.0.1 on the host network, their own with a namespace per Pod (see docs/services.md).
"""

from __future__ import annotations

import re

# ``$(<SERVICE>_SERVICE_HOST)`` / ``$(<SERVICE>_SERVICE_PORT)`` in a container's env, command or args.
SERVICE_REF = re.compile(r"\$\(([A-Z0-9_]+)_SERVICE_(HOST|PORT)\)")


def service_env_name(service: str) -> str:
    """Kubernetes' service-link prefix: ``my-svc`` -> ``MY_SVC`` (``MY_SVC_SERVICE_HOST``). One home for the
    kubelet that fills the variables in (ray_kubelet.py) and the training operators that refer to them."""
    return service.upper().replace("-", "_").replace(".", "_")


def service_host_ref(service: str) -> str:
    """``$(MY_SVC_SERVICE_HOST)``: a reference the kubelet expands to the Service's address at container start."""
    return f"$({service_env_name(service)}_SERVICE_HOST)"


def endpoint_addresses(endpoints: dict | None, port: str | int | None = None, ready_only: bool = True) -> list[tuple[str, int]]:
    """``(ip, port)`` pairs of an Endpoints object, for the port named (or numbered) ``port``, or the first
    port of each subset when ``port`` is None. Ready addresses come first; not-ready ones only on request."""
    out: list[tuple[str, int]] = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = subset.get("ports") or []
        chosen = None
        for p in ports:
            if port is None or p.get("name") == port or p.get("port") == port:
                chosen = p
                break
        if chosen is None:
            continue
        addrs = list(subset.get("addresses") or [])
        if not ready_only:
            addrs += subset.get("notReadyAddresses") or []
        out.extend((a["ip"], int(chosen["port"])) for a in addrs if a.get("ip"))
    return out


def endpoint_pods(endpoints: dict | None) -> list[str]:
    """Names of the ready pods behind an Endpoints object (from each address's targetRef)."""
    return [
        a["targetRef"]["name"]
        for s in (endpoints or {}).get("subsets") or []
        for a in s.get("addresses") or []
        if (a.get("targetRef") or {}).get("kind") == "Pod"
    ]


def service_host(service: dict) -> str:
    """The address a client dials for a Service: its clusterIP (127.0.0.1 on the host network, docs/services.md)."""
    ip = (service.get("spec") or {}).get("clusterIP")
    return "127.0.0.1" if not ip or ip == "None" else ip
