"""How ketch's in-pod helpers reach ketch: the server, bearer token and TLS trust from the Pod's KUBECONFIG.

A Pod's kubeconfig (written by the kubelet) names ketch, the namespace and the Pod's credential, as
in-cluster config does on a node. Helpers that run inside Pods (the MPI remote-shell agent, Custom metrics
collectors) read it with this instead of hard-coding a URL: ``server``, the ``token`` (inline or
``tokenFile``) and an ``ssl.SSLContext`` trusting ``certificate-authority(-data)`` for an https server.
"""

from __future__ import annotations

import base64
import os
import ssl
from dataclasses import dataclass


@dataclass
class InCluster:
    server: str
    token: str | None
    ssl_context: ssl.SSLContext | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def load(path: str | None = None) -> InCluster:
    import yaml

    with open(path or os.environ["KUBECONFIG"]) as f:
        kc = yaml.safe_load(f) or {}
    ctx = next(c["context"] for c in kc.get("contexts") or [] if c.get("name") == kc.get("current-context"))
    cluster = next(c["cluster"] for c in kc.get("clusters") or [] if c.get("name") == ctx.get("cluster"))
    user = next((u.get("user") or {} for u in kc.get("users") or [] if u.get("name") == ctx.get("user")), {})
    token = user.get("token")
    if not token and user.get("tokenFile"):
        with open(user["tokenFile"]) as f:
            token = f.read().strip()
    server = str(cluster["server"]).rstrip("/")
    tls = None
    if server.startswith("https://"):
        if cluster.get("insecure-skip-tls-verify"):
            tls = ssl.create_default_context()
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            tls = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif cluster.get("certificate-authority"):
            tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
        else:
            tls = ssl.create_default_context()
    return InCluster(server, token, tls)


def ssl_context_for(url: str) -> ssl.SSLContext | None:
    """The TLS trust for a request to ``url`` from inside a Pod: the Pod kubeconfig's (ketch's own CA) when
    ``url`` is https on the kubeconfig's server, as ``KETCH_SERVER`` is when ketch is reached beyond
    loopback; None (the default trust) for anything else, or where the Pod has no kubeconfig."""
    from urllib.parse import urlsplit

    path = os.environ.get("KUBECONFIG")
    if not url.startswith("https://") or not path:
        return None
    try:
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        hit = _TRUST.get(path)
        if hit is None or hit[0] != key:  # read and build once per kubeconfig file, not per request
            ic = load(path)
            hit = _TRUST[path] = (key, urlsplit(ic.server).netloc, ic.ssl_context)
    except (OSError, KeyError, StopIteration, ValueError):
        return None
    return hit[2] if hit[1] == urlsplit(url).netloc else None


# The kubeconfig's server and TLS trust, by file: (path, mtime, size) it was read at, netloc, SSLContext.
_TRUST: dict[str, tuple[tuple[str, int, int], str, ssl.SSLContext | None]] = {}
