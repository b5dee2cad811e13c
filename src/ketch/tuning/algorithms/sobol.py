"""sobol: a scrambled Sobol' quasi-random sequence over the search space (scipy's, as optuna's QMCSampler
uses). The n-th trial takes the n-th point, so the sequence continues correctly after a restart."""

from __future__ import annotations

from typing import Any

from ketch.tuning.algorithms.base import Algorithm, Entry, fmt, unit_to_value


class Sobol(Algorithm):
    settings: dict = {}

    def suggest(self, exp: dict, history: list[Entry], names: list[str], cache: dict[str, Any]) -> list[dict[str, str]]:
        from scipy.stats import qmc

        params = exp["spec"]["parameters"]
        seed = int(exp["metadata"]["uid"].replace("-", "")[:8], 16)
        start = len(history)
        eng = qmc.Sobol(d=len(params), scramble=True, seed=seed)
        if start:
            eng.fast_forward(start)
        pts = eng.random(len(names)) if names else []
        return [{p["name"]: fmt(p, unit_to_value(p, float(u))) for p, u in zip(params, row, strict=True)} for row in pts]


ALGORITHMS = {"sobol": Sobol()}
