"""What every suggestion algorithm shares: the trial history it learns from, the search space in optuna's
terms, settings validation with Katib's names, and formatting values as the strings Katib assigns."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Check = Callable[[str], "str | None"]  # a setting's value -> why it is wrong, or None


@dataclass
class Entry:
    """One trial the algorithm has handed out: its assignments and, once known, its outcome."""

    name: str
    assignments: dict[str, str]
    state: str  # "running" | "complete" | "failed"
    value: float | None = None
    labels: dict[str, str] = field(default_factory=dict)  # the suggestion's labels (pbt's generation, parent)


def as_int(lo: int | None = None, hi: int | None = None) -> Check:
    def c(v: str) -> str | None:
        try:
            x = int(v)
        except (TypeError, ValueError):
            return "must be an integer"
        if lo is not None and x < lo:
            return f"must be >= {lo}"
        if hi is not None and x > hi:
            return f"must be <= {hi}"
        return None

    return c


def as_float(lo: float | None = None, hi: float | None = None, open_lo: bool = False, open_hi: bool = False) -> Check:
    def c(v: str) -> str | None:
        try:
            x = float(v)
        except (TypeError, ValueError):
            return "must be a number"
        if lo is not None and (x < lo or (open_lo and x == lo)):
            return f"must be {'>' if open_lo else '>='} {lo}"
        if hi is not None and (x > hi or (open_hi and x == hi)):
            return f"must be {'<' if open_hi else '<='} {hi}"
        return None

    return c


def one_of(*values: str) -> Check:
    return lambda v: None if v in values else f"must be one of {', '.join(values)}"


class Algorithm:
    """Subclass: set ``settings`` (name -> check) and ``required``; implement ``suggest``."""

    settings: dict[str, Check] = {}
    required: tuple[str, ...] = ()
    distributions: tuple[str, ...] = ("uniform", "logUniform")

    def check(self, settings: dict[str, str], spec: dict, params: list[dict]) -> list[tuple[str, str]]:
        out = []
        for name, value in settings.items():
            chk = self.settings.get(name)
            if chk is None:
                known = ", ".join(sorted(self.settings)) or "none"
                out.append(("", f"unknown setting {name!r} for algorithm {spec['algorithm']['algorithmName']!r} (known: {known})"))
            elif (msg := chk(value)) is not None:
                out.append(("", f"setting {name!r}={value!r}: {msg}"))
        for name in self.required:
            if name not in settings:
                out.append(("", f"setting {name!r} is required for algorithm {spec['algorithm']['algorithmName']!r}"))
        for p in params:
            d = (p.get("feasibleSpace") or {}).get("distribution", "uniform")
            if p.get("parameterType") in ("int", "double") and d not in self.distributions:
                out.append(("", f"distribution {d!r} of parameter {p['name']!r} is not supported by {spec['algorithm']['algorithmName']!r}"))
        out.extend(self.extra_checks(settings, spec, params))
        return out

    def extra_checks(self, settings: dict[str, str], spec: dict, params: list[dict]) -> list[tuple[str, str]]:
        return []

    def exhausted(self, exp: dict, history: list[Entry]) -> bool | None:
        """Whether the search space has nothing more to give after ``history``; None: "when ``suggest``
        returned fewer than asked" (right for algorithms that never wait on running trials)."""
        return None

    def suggest(self, exp: dict, history: list[Entry], names: list[str], cache: dict[str, Any]) -> list[dict[str, str]]:
        """Assignments (or ``(assignments, trial labels)`` pairs) for the trials ``names`` (fewer, or none, when the search space is exhausted).

        ``cache`` is this experiment's scratch space: algorithms may keep a live sampler there, but must
        rebuild everything from ``history`` when it is empty (after a restart of ketch)."""
        raise NotImplementedError


def settings_of(exp: dict) -> dict[str, str]:
    return {s["name"]: s.get("value", "") for s in ((exp.get("spec") or {}).get("algorithm") or {}).get("algorithmSettings") or []}


def fmt(p: dict, v: Any) -> str:
    """A value as the string Katib assigns: ints without a point, doubles snapped to ``step``."""
    t = p.get("parameterType")
    fs = p.get("feasibleSpace") or {}
    if t == "int":
        return str(int(round(float(v))))
    if t == "double":
        x = float(v)
        step = fs.get("step")
        if step:
            lo = float(fs["min"])
            x = lo + round((x - lo) / float(step)) * float(step)
            x = min(max(x, lo), float(fs["max"]))
            digits = max(0, -math.floor(math.log10(float(step)))) + 2
            return repr(round(x, digits))
        return repr(x)
    return str(v)


def parse(p: dict, s: str) -> Any:
    t = p.get("parameterType")
    if t == "int":
        return int(float(s))
    if t == "double":
        return float(s)
    return s


def unit_to_value(p: dict, u: float) -> Any:
    """Map u in [0, 1) onto a parameter's feasible space (for quasi-random sequences)."""
    fs = p.get("feasibleSpace") or {}
    if p.get("parameterType") in ("categorical", "discrete"):
        items = fs.get("list") or []
        return items[min(int(u * len(items)), len(items) - 1)]
    lo, hi = float(fs["min"]), float(fs["max"])
    if fs.get("distribution") == "logUniform":
        x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    else:
        x = lo + u * (hi - lo)
    if p.get("parameterType") == "int":
        return min(int(math.floor(lo + u * (hi - lo + 1))), int(hi))
    return x
