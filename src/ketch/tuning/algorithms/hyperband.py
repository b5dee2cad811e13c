"""hyperband: brackets of successive halving over a resource parameter (Katib's settings: ``r_l`` the
maximum resource, ``resource_name`` the parameter that carries it, ``eta`` default 3).

The whole schedule is fixed by the settings: for s = s_max..0, a bracket starts n = ceil((s_max+1)/(s+1) *
eta^s) random configurations at resource r_l * eta^-s, and each rung i keeps the best floor(n * eta^-i) of
the previous rung at resource r_l * eta^(i-s). Trials are assigned to rungs in the order they were
suggested, so the state is read off the history and survives a restart. A rung is only promoted once every
trial of the rung before it has finished; until then nothing more is suggested.
"""

from __future__ import annotations

import math
import random
from typing import Any

from ketch.tuning.algorithms.base import Algorithm, Entry, as_float, as_int, fmt, unit_to_value


def schedule(r_l: float, eta: float) -> list[tuple[int, int, int, float]]:
    """[(bracket s, rung i, number of trials, resource)] in the order they run."""
    s_max = int(math.floor(math.log(r_l) / math.log(eta) + 1e-9))
    out = []
    for s in range(s_max, -1, -1):
        n = int(math.ceil((s_max + 1) / (s + 1) * eta**s))
        for i in range(s + 1):
            out.append((s, i, max(1, int(math.floor(n * eta ** (-i)))), r_l * eta ** (i - s)))
    return out


class Hyperband(Algorithm):
    settings = {"r_l": as_float(0, open_lo=True), "eta": as_float(1, open_lo=True), "resource_name": lambda v: None if v else "must not be empty",
                "random_state": as_int(0)}
    required = ("r_l", "resource_name")

    def extra_checks(self, settings, spec, params):  # noqa: ANN001, ANN201
        out = []
        if settings.get("resource_name") and settings["resource_name"] not in {p.get("name") for p in params}:
            out.append(("", f"resource_name {settings['resource_name']!r} is not one of spec.parameters"))
        try:
            r_l, eta = float(settings.get("r_l", "")), float(settings.get("eta", "3"))
        except ValueError:
            return out
        if r_l > 0 and eta > 1:
            need = math.ceil(eta ** math.floor(math.log(r_l) / math.log(eta) + 1e-9))
            if int(spec.get("parallelTrialCount", 3)) < need:
                out.append(("", f"parallelTrialCount must be >= {need} for hyperband with r_l={settings['r_l']} and eta={eta:g}"))
        return out

    def suggest(self, exp: dict, history: list[Entry], names: list[str], cache: dict[str, Any]) -> list[dict[str, str]]:
        spec = exp["spec"]
        settings = {s["name"]: s.get("value", "") for s in spec["algorithm"].get("algorithmSettings") or []}
        r_l, eta, res = float(settings["r_l"]), float(settings.get("eta", "3")), settings["resource_name"]
        params = spec["parameters"]
        by_name = {p["name"]: p for p in params}
        maximize = spec["objective"]["type"] == "maximize"
        rng = random.Random(int(settings.get("random_state", "0")) * 1_000_003 + len(history))
        pos, prev = 0, None
        out: list[dict[str, str]] = []
        for _s, i, n, r in schedule(r_l, eta):
            rung = history[pos:pos + n]
            if len(rung) < n:
                if i > 0:
                    assert prev is not None
                    if any(e.state == "running" for e in prev):
                        return out  # wait for the rung below to finish before promoting
                    ranked = sorted((e for e in prev if e.value is not None), key=lambda e: e.value, reverse=maximize)  # type: ignore[arg-type, return-value]
                    base = [dict(e.assignments) for e in ranked[len(rung):n]]
                    # a rung below with failures has too few to promote: fill with fresh random configurations
                    base += [{p["name"]: fmt(p, unit_to_value(p, rng.random())) for p in params} for _ in range(n - len(rung) - len(base))]
                else:
                    base = [{p["name"]: fmt(p, unit_to_value(p, rng.random())) for p in params} for _ in range(n - len(rung))]
                for a in base:
                    if len(out) == len(names):
                        return out
                    a[res] = fmt(by_name[res], r)
                    out.append(a)
                return out
            pos += n
            prev = rung
        return out

    def exhausted(self, exp: dict, history: list[Entry]) -> bool:
        settings = {s["name"]: s.get("value", "") for s in exp["spec"]["algorithm"].get("algorithmSettings") or []}
        return len(history) >= sum(n for _, _, n, _ in schedule(float(settings["r_l"]), float(settings.get("eta", "3"))))


ALGORITHMS = {"hyperband": Hyperband()}
