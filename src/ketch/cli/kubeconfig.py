"""Write or merge a kubeconfig context named ``ketch`` that points kubectl at a ketch server."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml


def default_path() -> Path:
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0]).expanduser()
    return Path.home() / ".kube" / "config"


def _upsert(items: list, name: str, key: str, value: dict) -> list:
    out = [i for i in items or [] if i.get("name") != name]
    out.append({"name": name, key: value})
    return out


def write_kubeconfig(server: str, path: Path | None = None, name: str = "ketch", use: bool = True, namespace: str = "default",
                     token: str | None = None, ca: Path | None = None) -> Path:
    """Merge cluster, user (bearer ``token``) and context ``name`` into the kubeconfig at ``path``."""
    path = path or default_path()
    cfg: dict = {}
    if path.exists():
        cfg = yaml.safe_load(path.read_text()) or {}
    cfg.setdefault("apiVersion", "v1")
    cfg.setdefault("kind", "Config")
    cfg.setdefault("preferences", {})
    cluster: dict = {"server": server}
    if ca is not None:
        cluster["certificate-authority-data"] = base64.b64encode(Path(ca).read_bytes()).decode()
    cfg["clusters"] = _upsert(cfg.get("clusters"), name, "cluster", cluster)
    cfg["users"] = _upsert(cfg.get("users"), name, "user", {"token": token} if token else {})
    cfg["contexts"] = _upsert(cfg.get("contexts"), name, "context", {"cluster": name, "user": name, "namespace": namespace})
    if use or not cfg.get("current-context"):
        cfg["current-context"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".ketch-tmp")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path
