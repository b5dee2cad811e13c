"""Ports for replicas: every pod runs on this host, so each replica needs its own free port (runtime.ports).

The allocated port is recorded in the replica's Service (``spec.ports[0].port``), which the engine creates
before the pods; a restarted ketch reads it back from there, so the wiring survives without hidden state.
"""

from __future__ import annotations


def service_ports(services: list[dict]) -> set[int]:
    out: set[int] = set()
    for s in services:
        for p in (s.get("spec") or {}).get("ports") or []:
            if isinstance(p.get("port"), int):
                out.add(p["port"])
    return out
