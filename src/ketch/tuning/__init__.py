"""Katib-compatible hyperparameter tuning (Experiment, Suggestion, Trial), and ``report`` for trial code.

``report`` is deliberately dependency-free (stdlib only): it runs inside trial processes.
"""

from __future__ import annotations

import json
import os
import urllib.request


def report(timestamp: str | None = None, **metrics: float) -> None:
    """Push metrics for the current trial to ketch: ``report(loss=0.25, accuracy=0.9)``.

    Uses the env ketch gives a trial's primary container (KATIB_TRIAL_NAME, KETCH_TRIAL_NAMESPACE, KETCH_URL) and
    the Pod's ServiceAccount token;
    raises RuntimeError outside a trial or when ketch refuses the values."""
    trial = os.environ.get("KATIB_TRIAL_NAME")
    ns = os.environ.get("KETCH_TRIAL_NAMESPACE", "default")
    url = os.environ.get("KETCH_URL", "http://127.0.0.1:8080")
    if not trial:
        raise RuntimeError("ketch.tuning.report: KATIB_TRIAL_NAME is not set (not running as a Katib trial)")
    body: dict = {"metrics": metrics}
    if timestamp:
        body["timestamp"] = timestamp
    from ketch.kinds.mounts import bearer  # stdlib-only too: the Pod's ServiceAccount token

    req = urllib.request.Request(f"{url}/katib/v1/namespaces/{ns}/trials/{trial}/metrics", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **bearer()}, method="POST")
    try:
        ctx = None
        if url.startswith("https://"):  # ketch reached beyond loopback: its CA is in the Pod's kubeconfig
            from ketch.kinds.incluster import ssl_context_for

            ctx = ssl_context_for(url)
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            r.read()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"ketch.tuning.report: {e.code} {e.read().decode(errors='replace')}") from e


__all__ = ["report"]
