"""A container's environment: env (value / valueFrom), envFrom, and Kubernetes' $(VAR) expansion.

Expansion follows Kubernetes exactly: ``$(NAME)`` is replaced when NAME is defined (earlier in ``env``, or
anywhere for command/args), ``$$`` escapes a ``$``, and an unknown reference is left as written.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from ketch.kinds.resources import parse_quantity

Lookup = Callable[[str, str, str], dict | None]  # (kind, namespace, name) -> object or None


class ConfigError(Exception):
    """The container cannot be configured yet (missing ConfigMap/Secret/key): CreateContainerConfigError."""


def expand(s: str, env: dict[str, str]) -> str:
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch == "$" and i + 1 < n:
            nxt = s[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = s.find(")", i + 2)
                if end != -1:
                    name = s[i + 2 : end]
                    if name in env:
                        out.append(env[name])
                    else:
                        out.append(s[i : end + 1])
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def field_ref(pod: dict, path: str) -> str:
    md, spec, st = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    simple = {
        "metadata.name": md.get("name", ""),
        "metadata.namespace": md.get("namespace", ""),
        "metadata.uid": md.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": st.get("podIP") or "127.0.0.1",
        "status.hostIP": st.get("hostIP") or "127.0.0.1",
        "status.podIPs": st.get("podIP") or "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    for prefix, src in (("metadata.labels", md.get("labels") or {}), ("metadata.annotations", md.get("annotations") or {})):
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(src.items()))
        if path.startswith(prefix + "['") and path.endswith("']"):
            return src.get(path[len(prefix) + 2 : -2], "")
        if path.startswith(prefix + "."):
            return src.get(path[len(prefix) + 1 :], "")
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_field_ref(pod: dict, container_name: str, ref: dict, node_allocatable: dict[str, float]) -> str:
    cname = ref.get("containerName") or container_name
    res = ref.get("resource", "")
    divisor = parse_quantity(ref.get("divisor") or "1") or 1.0
    spec = pod.get("spec") or {}
    c = next((c for c in (spec.get("containers") or []) + (spec.get("initContainers") or []) if c.get("name") == cname), {})
    kind, _, rname = res.partition(".")
    vals = (c.get("resources") or {}).get(kind) or {}
    if rname in vals:
        v = parse_quantity(vals[rname])
    elif kind == "limits":
        v = node_allocatable.get(rname, 0.0)  # no limit: the node's allocatable, as Kubernetes reports
    else:
        v = 0.0
    q = v / divisor
    import math

    return str(int(math.ceil(q)))


def _decode_secret(v: str) -> str:
    return base64.b64decode(v).decode(errors="replace")


def _key_ref(lookup: Lookup, kind: str, ns: str, ref: dict) -> str | None:
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    obj = lookup(kind, ns, name)
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind.lower()} "{name}" not found')
    data = obj.get("data") or {}
    if key in data:
        return _decode_secret(data[key]) if kind == "Secret" else str(data[key])
    if kind == "ConfigMap" and key in (obj.get("binaryData") or {}):
        return _decode_secret(obj["binaryData"][key])
    if optional:
        return None
    raise ConfigError(f'couldn\'t find key {key} in {kind} {ns}/{name}')


def container_env(
    pod: dict, c: dict, base: dict[str, str], lookup: Lookup, node_allocatable: dict[str, float]
) -> dict[str, str]:
    """``base`` (the process environment ketch provides), then envFrom, then env in order, expanded."""
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    env = dict(base)
    for src in c.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, fld in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = src.get(fld)
            if not ref:
                continue
            obj = lookup(kind, ns, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind.lower()} "{ref.get("name")}" not found')
            for k, v in (obj.get("data") or {}).items():
                env[prefix + k] = _decode_secret(v) if kind == "Secret" else str(v)
    for e in c.get("env") or []:
        name = e.get("name")
        if "value" in e or "valueFrom" not in e:
            env[name] = expand(str(e.get("value", "")), env)
            continue
        vf = e["valueFrom"] or {}
        val: str | None
        if "configMapKeyRef" in vf:
            val = _key_ref(lookup, "ConfigMap", ns, vf["configMapKeyRef"])
        elif "secretKeyRef" in vf:
            val = _key_ref(lookup, "Secret", ns, vf["secretKeyRef"])
        elif "fieldRef" in vf:
            val = field_ref(pod, (vf["fieldRef"] or {}).get("fieldPath", ""))
        elif "resourceFieldRef" in vf:
            val = resource_field_ref(pod, c.get("name", ""), vf["resourceFieldRef"], node_allocatable)
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {json.dumps(vf)}")
        if val is not None:
            env[name] = val
    return env
