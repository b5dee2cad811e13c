"""For Custom metrics collectors (Katib's ``collector.kind: Custom``): when to stop.

Katib's custom collectors share the pod's process namespace and wait for the training process to exit.
A ketch pod has no process namespace of its own, so a collector asks its own Pod instead:
``primary_finished()`` is True once the primary container (``KATIB_PRIMARY_CONTAINER``, set by ketch on
the sidecar) has terminated, read through the API with the pod's kubeconfig. A collector loops: read what
the trial wrote, ``ketch.tuning.report(...)`` it, and exit once ``primary_finished()`` and everything is
read.
"""

from __future__ import annotations

import json
import os
import urllib.request


def primary_finished() -> bool:
    """Whether this pod's primary container has terminated (False while it runs or has not started)."""
    primary = os.environ.get("KATIB_PRIMARY_CONTAINER")
    ns, pod = os.environ.get("KETCH_POD_NAMESPACE"), os.environ.get("KETCH_POD_NAME")
    if not (primary and ns and pod):
        raise RuntimeError("primary_finished() runs in a Custom collector sidecar (KATIB_PRIMARY_CONTAINER, KETCH_POD_* unset)")
    from ketch.kinds import incluster

    api = incluster.load()
    req = urllib.request.Request(f"{api.server}/api/v1/namespaces/{ns}/pods/{pod}", headers=api.headers)
    with urllib.request.urlopen(req, timeout=30, context=api.ssl_context) as r:
        status = json.loads(r.read()).get("status") or {}
    for cs in status.get("containerStatuses") or []:
        if cs.get("name") == primary:
            return "terminated" in (cs.get("state") or {})
    return False
