"""Volumes as real directories, and the path policy that lets absolute mountPaths work without a
container filesystem.

Every volume of a pod is a directory on this machine:

- emptyDir: ``KETCH_HOME/kubelet/pods/<uid>/volumes/<name>`` (removed with the pod);
- persistentVolumeClaim: ``KETCH_HOME/volumes/<namespace>/<claim>`` (kept until the claim is deleted;
  the kubelet marks the claim Bound);
- hostPath: the path itself;
- configMap, secret, downwardAPI, projected: files written into a per-pod directory.

A container sees its mounts through **rewriting**: a mountPath (``/data``) is not created on the host;
instead every occurrence of it at a path boundary in command, args, env values and workingDir is replaced
by the volume's directory (``/data/x.csv`` -> ``.../volumes/data/x.csv``), and ``KETCH_VOLUME_<NAME>``
(name upper-cased, ``-`` and ``.`` as ``_``) holds the directory too. A program that builds paths at run
time should read the environment variable. subPath mounts point into the volume; readOnly is not enforced.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from ketch.kinds.mounts import rewriter  # noqa: F401 - the policy's home is ketch.kinds.mounts
from ketch.kubelet.env import ConfigError, field_ref, resource_field_ref

Lookup = Callable[[str, str, str], dict | None]
# (pod, serviceAccountToken source) -> a token for the pod's ServiceAccount, bound to the pod.
Mint = Callable[[dict, dict], str]


def env_name(volume: str) -> str:
    return "KETCH_VOLUME_" + re.sub(r"[^A-Za-z0-9]", "_", volume).upper()


def _write(d: Path, rel: str, data: bytes, mode: int | None) -> None:
    p = d / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_bytes(data)
    if mode is not None:
        os.chmod(tmp, mode)
    tmp.replace(p)


def _project_data(d: Path, obj: dict | None, src: dict, kind: str, default_mode: int | None) -> None:
    if obj is None:
        if src.get("optional"):
            return
        raise ConfigError(f'{kind.lower()} "{src.get("name") or src.get("secretName")}" not found')
    raw: dict[str, bytes] = {}
    for k, v in (obj.get("data") or {}).items():
        raw[k] = base64.b64decode(v) if kind == "Secret" else str(v).encode()
    for k, v in (obj.get("binaryData") or {}).items():
        raw[k] = base64.b64decode(v)
    items = src.get("items")
    if items:
        for it in items:
            if it.get("key") not in raw:
                if src.get("optional"):
                    continue
                raise ConfigError(f"configmap/secret key {it.get('key')!r} not found")
            _write(d, it.get("path") or it["key"], raw[it["key"]], it.get("mode", default_mode))
    else:
        for k, v in raw.items():
            _write(d, k, v, default_mode)


def _downward(d: Path, pod: dict, items: list[dict], default_mode: int | None, alloc: dict[str, float]) -> None:
    for it in items or []:
        if "fieldRef" in it:
            val = field_ref(pod, it["fieldRef"].get("fieldPath", ""))
        else:
            val = resource_field_ref(pod, "", it.get("resourceFieldRef") or {}, alloc)
        _write(d, it["path"], val.encode(), it.get("mode", default_mode))


def prepare(pod: dict, pod_dir: Path, home: Path, lookup: Lookup, alloc: dict[str, float], mint: Mint | None = None) -> dict[str, str]:
    """Create every volume's directory; returns volume name -> directory. Raises ConfigError if a source
    (ConfigMap, Secret, claim) is missing. ``mint`` makes the tokens of serviceAccountToken projections."""
    ns = pod["metadata"].get("namespace", "default")
    out: dict[str, str] = {}
    for v in (pod.get("spec") or {}).get("volumes") or []:
        name = v["name"]
        d = pod_dir / "volumes" / name
        if "persistentVolumeClaim" in v:
            claim = (v["persistentVolumeClaim"] or {}).get("claimName", "")
            if lookup("PersistentVolumeClaim", ns, claim) is None:
                raise ConfigError(f'persistentvolumeclaim "{claim}" not found')
            d = home / "volumes" / ns / claim
            d.mkdir(parents=True, exist_ok=True)
        elif "hostPath" in v:
            hp = v["hostPath"] or {}
            d = Path(hp.get("path", "/"))
            if hp.get("type") in ("DirectoryOrCreate", None, "") and not d.exists():
                d.mkdir(parents=True, exist_ok=True)
            elif hp.get("type") == "Directory" and not d.is_dir():
                raise ConfigError(f"hostPath type check failed: {d} is not a directory")
        elif "configMap" in v:
            src = v["configMap"] or {}
            d.mkdir(parents=True, exist_ok=True)
            _project_data(d, lookup("ConfigMap", ns, src.get("name", "")), src, "ConfigMap", src.get("defaultMode"))
        elif "secret" in v:
            src = v["secret"] or {}
            d.mkdir(parents=True, exist_ok=True)
            _project_data(d, lookup("Secret", ns, src.get("secretName", "")), {**src, "name": src.get("secretName")}, "Secret", src.get("defaultMode"))
        elif "downwardAPI" in v:
            d.mkdir(parents=True, exist_ok=True)
            _downward(d, pod, (v["downwardAPI"] or {}).get("items") or [], (v["downwardAPI"] or {}).get("defaultMode"), alloc)
        elif "projected" in v:
            d.mkdir(parents=True, exist_ok=True)
            pj = v["projected"] or {}
            for s in pj.get("sources") or []:
                if "configMap" in s:
                    _project_data(d, lookup("ConfigMap", ns, s["configMap"].get("name", "")), s["configMap"], "ConfigMap", pj.get("defaultMode"))
                elif "secret" in s:
                    _project_data(d, lookup("Secret", ns, s["secret"].get("name", "")), s["secret"], "Secret", pj.get("defaultMode"))
                elif "downwardAPI" in s:
                    _downward(d, pod, s["downwardAPI"].get("items") or [], pj.get("defaultMode"), alloc)
                elif "serviceAccountToken" in s and mint is not None:
                    src = s["serviceAccountToken"] or {}
                    # A credential: this user's alone whatever defaultMode says (the home is 0700 too).
                    _write(d, src.get("path") or "token", mint(pod, src).encode(), 0o600)
        else:  # emptyDir and anything this machine cannot provide otherwise
            d.mkdir(parents=True, exist_ok=True)
        out[name] = str(d)
    return out


def mounts_for(c: dict, vols: dict[str, str]) -> dict[str, str]:
    """mountPath -> real directory for one container (subPath applied)."""
    out: dict[str, str] = {}
    for m in c.get("volumeMounts") or []:
        d = vols.get(m.get("name", ""))
        if d is None:
            continue
        if m.get("subPath"):
            d = os.path.join(d, m["subPath"])
            os.makedirs(d, exist_ok=True)
        out[m["mountPath"].rstrip("/") or "/"] = d
    return out


def remove_pod_dir(pod_dir: Path) -> None:
    shutil.rmtree(pod_dir, ignore_errors=True)
