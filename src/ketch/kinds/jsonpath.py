"""A small JSONPath evaluator for printer columns and ``kubectl wait --for=jsonpath`` style lookups.

Supports what CRD printer columns use: ``.a.b``, ``.a[0]``, ``.a[*].b``, ``.a[?(@.type=="Ready")].status``.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"\.([A-Za-z0-9_\-$]+)|\[(\d+|\*|-?\d+)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*(==|!=)\s*['\"]?([^'\")]*)['\"]?\)\]|\['([^']+)'\]")


def evaluate(obj: Any, path: str) -> list[Any]:
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    if path and not path.startswith((".", "[")):
        path = "." + path
    cur = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ValueError(f"unsupported JSONPath at {path[pos:]!r}")
        pos = m.end()
        field, idx, fkey, fop, fval, qfield = m.groups()
        nxt: list[Any] = []
        for c in cur:
            if field is not None or qfield is not None:
                f = field if field is not None else qfield
                if isinstance(c, dict) and f in c:
                    nxt.append(c[f])
            elif idx is not None:
                if isinstance(c, list):
                    if idx == "*":
                        nxt.extend(c)
                    else:
                        i = int(idx)
                        if -len(c) <= i < len(c):
                            nxt.append(c[i])
                elif isinstance(c, dict) and idx == "*":
                    nxt.extend(c.values())
            elif fkey is not None:
                if isinstance(c, list):
                    for item in c:
                        v = item
                        for part in fkey.split("."):
                            v = v.get(part) if isinstance(v, dict) else None
                        sv = _str(v)
                        if (fop == "==" and sv == fval) or (fop == "!=" and sv != fval):
                            nxt.append(item)
        cur = nxt
    return cur


def _str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    return str(v)


def first(obj: Any, path: str) -> Any:
    try:
        r = evaluate(obj, path)
    except ValueError:
        return None
    return r[0] if r else None
