"""Pure helpers over object metadata: names, timestamps, uids, conditions.

Kept free of any server state so every layer (store, machinery, controllers, kubelet) can use them.
"""

from __future__ import annotations

import datetime as _dt
import re
import secrets
import time
import uuid
from typing import Any

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_GEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


_last_second: tuple[int, str] = (0, "")


def now() -> str:
    """RFC 3339 UTC timestamp with second precision, as Kubernetes writes them. Formatted once per second:
    every write stamps a time or two, and strftime was a few percent of a create's CPU."""
    global _last_second
    t = int(time.time())
    sec, text = _last_second  # one tuple: a thread reads a consistent pair
    if sec != t:
        text = _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _last_second = (t, text)
    return text


def now_micro() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    v = value.replace("Z", "+00:00")
    try:
        return _dt.datetime.fromisoformat(v)
    except ValueError:
        return None


def age_seconds(value: str | None) -> float | None:
    t = parse_time(value)
    if t is None:
        return None
    return (_dt.datetime.now(_dt.UTC) - t).total_seconds()


def human_age(value: str | None) -> str:
    """The compact age kubectl prints: 5s, 3m12s, 4h, 2d."""
    secs = age_seconds(value)
    if secs is None:
        return "<unknown>"
    s = int(max(secs, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    return f"{d}d"


def new_uid() -> str:
    return str(uuid.uuid4())


def generate_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(_GEN_ALPHABET) for _ in range(n))


def validate_dns_subdomain(name: str) -> str | None:
    """Return the Kubernetes-style reason a name is not a DNS-1123 subdomain, or None."""
    if len(name) > 253:
        return "must be no more than 253 characters"
    if not DNS1123_SUBDOMAIN.match(name):
        return (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return None


def validate_dns_label(name: str) -> str | None:
    if len(name) > 63:
        return "must be no more than 63 characters"
    if not DNS1123_LABEL.match(name):
        return (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
            "start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for "
            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    return None


def get_path(obj: Any, path: str, default: Any = None) -> Any:
    """Look up a dotted path such as 'status.phase' in nested dicts."""
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def ref(obj: dict) -> tuple[str, str]:
    md = obj.get("metadata", {})
    return md.get("namespace", ""), md.get("name", "")


def owner_reference(owner: dict, controller: bool = True, block: bool = True) -> dict:
    """An ownerReference pointing at ``owner``, as Kubeflow's operators set on what they create."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": block,
    }


def controller_of(obj: dict) -> dict | None:
    for o in obj.get("metadata", {}).get("ownerReferences") or []:
        if o.get("controller"):
            return o
    return None


def get_condition(obj: dict, ctype: str) -> dict | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def set_condition(
    status: dict, ctype: str, cstatus: str, reason: str = "", message: str = "", **extra: Any
) -> bool:
    """Set a condition in a status dict; keep lastTransitionTime unless the status flips.

    Returns True when anything changed, so reconcilers can skip no-op writes.
    """
    conds = status.setdefault("conditions", [])
    ts = now()
    for c in conds:
        if c.get("type") == ctype:
            changed = c.get("status") != cstatus or c.get("reason") != reason or c.get("message") != message
            if c.get("status") != cstatus:
                c["lastTransitionTime"] = ts
            if changed:
                c.update({"status": cstatus, "reason": reason, "message": message, **extra})
                c["lastUpdateTime"] = ts
            return changed
    conds.append(
        {
            "type": ctype,
            "status": cstatus,
            "reason": reason,
            "message": message,
            "lastTransitionTime": ts,
            "lastUpdateTime": ts,
            **extra,
        }
    )
    return True


def selector_string(sel: dict | None) -> str:
    """A LabelSelector as its string form (``app=web,tier in (a,b)``): what Scale's status.selector and
    kubectl's SELECTOR column show."""
    sel = sel or {}
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, key, vals = e.get("operator"), e.get("key", ""), sorted(e.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({','.join(vals)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(vals)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
