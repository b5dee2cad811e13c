"""How a Pod's mountPaths reach its programs when there is no container filesystem.

The kubelet does not create ``/data`` on the host; it replaces every occurrence of a mountPath at a path
boundary by the volume's directory (``/data/x.csv`` -> ``.../volumes/data/x.csv``, but not ``/database``
or ``/x/data``) in command, args, env and workingDir, and gives each container ``KETCH_MOUNTS``: the JSON
map of its mountPaths to directories, so a program that carries paths in other places (a pipeline task's
component source) can apply the same rule. Shared here so both sides use one definition of the rule.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

ENV = "KETCH_MOUNTS"


def rewriter(mounts: dict[str, str]) -> Callable[[str], str]:
    """A function replacing mountPaths at path boundaries by their directories (longest mountPath first)."""
    paths = sorted((p for p in mounts if p != "/"), key=len, reverse=True)
    if not paths:
        return lambda s: s
    pat = re.compile(r"(?<![\w.\-/])(" + "|".join(re.escape(p) for p in paths) + r")(?=$|[/\s'\";:,)=\]}])")
    return lambda s: pat.sub(lambda m: mounts[m.group(1)], s)


def from_env(env: dict[str, str] | None = None) -> Callable[[str], str]:
    """The rewriter for the mounts this process's container was given (identity when none)."""
    raw = (os.environ if env is None else env).get(ENV)
    return rewriter(json.loads(raw)) if raw else (lambda s: s)


SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def pod_token(env: dict[str, str] | None = None) -> str | None:
    """Inside a Pod: the credential ketch's own in-pod helpers send (metrics push, model downloads) —
    ``KETCH_TOKEN`` if set, else the ServiceAccount token the kubelet mounted at its real directory."""
    e = os.environ if env is None else env
    if e.get("KETCH_TOKEN"):
        return e["KETCH_TOKEN"]
    path = from_env(dict(e))(SERVICE_ACCOUNT + "/token")
    try:
        with open(path) as f:
            return f.read().strip() or None
    except OSError:
        return None


def bearer(env: dict[str, str] | None = None) -> dict[str, str]:
    tok = pod_token(env)
    return {"Authorization": f"Bearer {tok}"} if tok else {}
