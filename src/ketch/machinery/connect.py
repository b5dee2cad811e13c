"""How a client on this machine (every ``ketch`` subcommand, ``ketch.tuning.tune``) finds the server and its credentials — one rule for all of them:

- the server: ``--server``, else ``KETCH_SERVER`` (``KETCH_URL`` is read too, for older scripts), else the
  kubeconfig's current context (``$KUBECONFIG`` or ``~/.kube/config``), else http://127.0.0.1:8080;
- the token: ``KETCH_TOKEN``, else the kubeconfig user of a context whose cluster is that server, else,
  for a server on this machine, the admin token in ``KETCH_HOME/tokens.csv`` (what ``ketch token`` prints);
- TLS: the kubeconfig cluster's certificate authority, else the self-signed certificate under
  ``KETCH_HOME/tls`` when the server is this machine's.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

DEFAULT = "http://127.0.0.1:8080"


@dataclass
class Connection:
    server: str
    token: str | None
    verify: str | bool = True

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.server, headers=self.headers, verify=self.verify, timeout=kw.pop("timeout", 30), **kw)


def _kubeconfig() -> dict:
    env = os.environ.get("KUBECONFIG")
    p = Path(env.split(os.pathsep)[0]).expanduser() if env else Path.home() / ".kube" / "config"
    try:
        return yaml.safe_load(p.read_text()) or {} if p.exists() else {}
    except (OSError, yaml.YAMLError):
        return {}


def _named(items: list | None, name: str, key: str) -> dict:
    for i in items or []:
        if isinstance(i, dict) and i.get("name") == name:
            return i.get(key) or {}
    return {}


def _local(server: str) -> bool:
    from ketch.machinery.hosts import is_loopback

    return is_loopback(urlsplit(server).netloc or "")


def resolve(server: str | None = None) -> Connection:
    cfg = _kubeconfig()
    server = server or os.environ.get("KETCH_SERVER") or os.environ.get("KETCH_URL")
    current = cfg.get("current-context") or ""
    if not server and current:
        ctx = _named(cfg.get("contexts"), current, "context")
        server = _named(cfg.get("clusters"), ctx.get("cluster", ""), "cluster").get("server")
    server = (server or DEFAULT).rstrip("/")
    token = os.environ.get("KETCH_TOKEN") or None
    verify: str | bool = True
    names = [current] + [c.get("name", "") for c in cfg.get("contexts") or [] if isinstance(c, dict)]
    for name in names:
        ctx = _named(cfg.get("contexts"), name, "context")
        cluster = _named(cfg.get("clusters"), ctx.get("cluster", ""), "cluster")
        # the same port serves http and https, so a context names this server whatever its scheme
        if urlsplit((cluster.get("server") or "").rstrip("/")).netloc != urlsplit(server).netloc:
            continue
        user = _named(cfg.get("users"), ctx.get("user", ""), "user")
        token = token or user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        if not server.startswith("https:"):
            pass
        elif cluster.get("certificate-authority"):
            verify = cluster["certificate-authority"]
        elif cluster.get("certificate-authority-data"):
            f = tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False)
            f.write(base64.b64decode(cluster["certificate-authority-data"]))
            f.close()
            verify = f.name
        break
    if _local(server):
        from ketch.config import default_home

        home = default_home()
        if not token and (home / "tokens.csv").exists():
            from ketch.machinery.authn import TokenFile

            token = TokenFile(home / "tokens.csv").ensure_admin()
        if verify is True and server.startswith("https:") and (home / "tls" / "tls.crt").exists():
            verify = str(home / "tls" / "tls.crt")
    return Connection(server, token, verify)
