"""Ports for replicas: every pod runs on this host, so each replica needs its own free port.

The allocated port is recorded in the replica's Service (``spec.ports[0].port``), which the engine creates
before the pods; a restarted ketch reads it back from there, so the wiring survives without hidden state.
"""

from __future__ import annotations

import socket


def free_port(taken: set[int]) -> int:
    """A port the OS says is free on 127.0.0.1 and that no other training Service has claimed."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p not in taken:
            taken.add(p)
            return p
    raise RuntimeError("no free port found")


def service_ports(services: list[dict]) -> set[int]:
    out: set[int] = set()
    for s in services:
        for p in (s.get("spec") or {}).get("ports") or []:
            if isinstance(p.get("port"), int):
                out.add(p["port"])
    return out
