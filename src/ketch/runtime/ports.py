"""Host ports for what controllers run: every Pod of the local kubelet listens on this machine, so a model
server, a training replica or a notebook that needs a port of its own gets one the OS says is free."""

from __future__ import annotations

import socket


def free_port(taken: set[int] | None = None) -> int:
    """A port free on 127.0.0.1 now and not in ``taken`` (which it joins): ports a controller has handed
    out but whose servers do not listen yet."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if taken is None:
            return p
        if p not in taken:
            taken.add(p)
            return p
    raise RuntimeError("no free port found")
