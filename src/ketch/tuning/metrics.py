"""Metrics from what a trial's primary container writes, parsed as Katib's collectors parse them, and the
observation (min / max / latest per metric, ``unavailable`` when never seen) computed from them.

TEXT: each line may start with an RFC 3339 timestamp and a space; every match of the filters (default:
Katib's ``([\\w|-]+)\\s*=\\s*([+-]?\\d*(\\.\\d+)?([Ee][+-]?\\d+)?)``) gives (name, value); only the experiment's
metric names are kept. JSON: one object per line, values must be strings (as in Katib), optional
``timestamp`` (RFC 3339 or epoch seconds).
"""

from __future__ import annotations

import datetime as dt
import json
import re

from ketch.tuning.spec import DEFAULT_REGEX

UNAVAILABLE = "unavailable"
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))\s")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_text(text: str, names: list[str], filters: list[str] | None = None) -> list[dict]:
    regs = [re.compile(f) for f in (filters or [DEFAULT_REGEX])]
    out = []
    t0 = _now()
    for line in text.splitlines():
        if not any(n in line for n in names):
            continue
        ts = t0
        m = _TS.match(line)
        if m:
            ts, line = m.group(1), line[m.end():]
        for r in regs:
            for hit in r.finditer(line):
                name, value = hit.group(1).strip(), hit.group(2).strip()
                if name in names and value not in ("", "+", "-", "."):
                    out.append({"time": ts, "name": name, "value": value})
    return out


def parse_json(text: str, names: list[str]) -> list[dict]:
    out = []
    t0 = _now()
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        ts = obj.get("timestamp", t0)
        if isinstance(ts, int | float):
            ts = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for n in names:
            if isinstance(obj.get(n), str):
                out.append({"time": str(ts), "name": n, "value": obj[n]})
    return out


def observation(logs: list[dict], names: list[str]) -> dict:
    """Katib's trial observation: per metric min, max and latest (by time), or ``unavailable``."""
    metrics = []
    for n in names:
        vals = [r for r in logs if r["name"] == n]
        if not vals:
            metrics.append({"name": n, "min": UNAVAILABLE, "max": UNAVAILABLE, "latest": UNAVAILABLE})
            continue
        latest = max(enumerate(vals), key=lambda iv: (iv[1]["time"], iv[0]))[1]["value"]
        nums = []
        for r in vals:
            try:
                nums.append(float(r["value"]))
            except ValueError:
                pass
        lo = _num(min(nums)) if nums else UNAVAILABLE
        hi = _num(max(nums)) if nums else UNAVAILABLE
        metrics.append({"name": n, "min": lo, "max": hi, "latest": latest})
    return {"metrics": metrics}


def _num(x: float) -> str:
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


def objective_value(obs: dict | None, name: str, strategy: str) -> float | None:
    """The objective as the experiment ranks it: min, max or latest (min/max fall back to latest)."""
    for m in (obs or {}).get("metrics") or []:
        if m.get("name") != name:
            continue
        v = m.get(strategy if strategy in ("min", "max", "latest") else "latest")
        if v in (None, UNAVAILABLE):
            v = m.get("latest")
        try:
            return float(v)
        except (TypeError, ValueError):
            return None
    return None
