"""Katib's successCondition / failureCondition: the GJSON expressions it evaluates on the trial's run object.

Supports the subset Katib's defaults and examples use: dotted paths, ``#(key=="value")#`` (all matches) and
``#(key=="value")`` (first match) queries with ``==``, ``!=``, ``<``, ``>``, ``<=``, ``>=``, and ``|`` to
apply further queries to the result. A condition holds when the result is a non-empty array or a truthy value.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r'#\(\s*([\w.\-]+)\s*(==|!=|<=|>=|<|>|%)\s*("(?:[^"\\]|\\.)*"|[^)]*)\s*\)(#?)|[^.|]+|\||\.')


def _cmp(a: Any, op: str, b: str) -> bool:
    if b.startswith('"'):
        bv: Any = b[1:-1]
        av: Any = "" if a is None else str(a) if not isinstance(a, bool) else str(a).lower()
    else:
        try:
            bv, av = float(b), float(a)
        except (TypeError, ValueError):
            bv, av = b, str(a)
    return {"==": av == bv, "!=": av != bv, "<": av < bv, ">": av > bv, "<=": av <= bv, ">=": av >= bv}.get(op, False)


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def evaluate(obj: dict, expr: str) -> Any:
    cur: Any = obj
    for m in _TOKEN.finditer(expr.strip()):
        tok = m.group(0)
        if tok in (".", "|"):
            continue
        if m.group(1) is not None:
            key, op, val, all_ = m.group(1), m.group(2), m.group(3).strip(), m.group(4)
            items = cur if isinstance(cur, list) else []
            hits = [x for x in items if _cmp(_get(x, key), op, val)]
            cur = hits if all_ else (hits[0] if hits else None)
        elif tok == "#":
            cur = len(cur) if isinstance(cur, list) else None
        else:
            cur = cur.get(tok) if isinstance(cur, dict) else [x.get(tok) for x in cur if isinstance(x, dict)] if isinstance(cur, list) else None
        if cur is None:
            return None
    return cur


def holds(obj: dict, expr: str | None) -> bool:
    if not expr:
        return False
    v = evaluate(obj, expr)
    if isinstance(v, list):
        return len(v) > 0
    return bool(v) and v not in ("false", "False")
