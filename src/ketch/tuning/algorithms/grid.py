"""grid: every combination of the search space, in order, each once; then the space is exhausted.

Doubles need a ``step`` (as in Katib); ints default to step 1. The next points are the first combinations
no trial has taken yet, so the order survives a restart without any saved state.
"""

from __future__ import annotations

import itertools
from typing import Any

from ketch.tuning.algorithms.base import Algorithm, Entry, as_int, fmt


def _values(p: dict) -> list[str]:
    fs = p.get("feasibleSpace") or {}
    if p["parameterType"] in ("categorical", "discrete"):
        return [str(v) for v in fs.get("list") or []]
    lo, hi = float(fs["min"]), float(fs["max"])
    step = float(fs.get("step") or 1)
    n = int((hi - lo) / step + 1e-9) + 1
    return list(dict.fromkeys(fmt(p, lo + i * step) for i in range(n)))


class Grid(Algorithm):
    settings = {"random_state": as_int(0)}

    def extra_checks(self, settings, spec, params):  # noqa: ANN001, ANN201
        from ketch.tuning.spec import MAX_GRID_POINTS, grid_size

        out = [("", f"grid needs feasibleSpace.step for double parameter {p['name']!r}") for p in params
               if p.get("parameterType") == "double" and not (p.get("feasibleSpace") or {}).get("step")]
        size = grid_size(params)  # counted from min, max and step: nothing is enumerated here
        if not out and size > MAX_GRID_POINTS:
            shown = f"{size:.3g}" if size < 1e300 else "too many"
            out.append(("", f"the grid has {shown} points, more than the {MAX_GRID_POINTS} allowed: raise feasibleSpace.step or narrow min/max"))
        elif not out and spec.get("maxTrialCount") and spec["maxTrialCount"] > size:
            out.append(("", f"maxTrialCount {spec['maxTrialCount']} is greater than the {int(size)} points of the grid"))
        return out

    def suggest(self, exp: dict, history: list[Entry], names: list[str], cache: dict[str, Any]) -> list[dict[str, str]]:
        params = exp["spec"]["parameters"]
        taken = {tuple(e.assignments.get(p["name"]) for p in params) for e in history}
        out: list[dict[str, str]] = []
        for combo in itertools.product(*(_values(p) for p in params)):
            if len(out) == len(names):
                break
            if combo not in taken:
                out.append(dict(zip([p["name"] for p in params], combo, strict=True)))
        return out


ALGORITHMS = {"grid": Grid()}
