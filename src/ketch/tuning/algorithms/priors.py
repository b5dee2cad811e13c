"""Normal and log-normal priors (Katib's ``normal`` / ``logNormal`` distributions) for samplers that draw
uniformly: the probability integral transform.

Katib's FeasibleSpace has only min and max, so the prior is the normal centred on the middle of the range
with sigma a sixth of it (99.7% of its mass inside), truncated to [min, max]; ``logNormal`` is the same on
log(x). The sampler sees a unit parameter u in (0, 1) and the trial gets x = F^-1(u), F the truncated
normal's CDF: a uniform draw of u is a normal draw of x, and TPE's Parzen estimators, built over u, start
from that normal prior instead of a flat one. Observed values map back with u = F(x).
"""

from __future__ import annotations

import math
from statistics import NormalDist

NORMAL = ("normal", "logNormal")
EPS = 1e-9


def is_normal(p: dict) -> bool:
    return p.get("parameterType") in ("int", "double") and (p.get("feasibleSpace") or {}).get("distribution") in NORMAL


def _frame(p: dict) -> tuple[NormalDist, float, float, bool]:
    fs = p["feasibleSpace"]
    log = fs.get("distribution") == "logNormal"
    lo, hi = float(fs["min"]), float(fs["max"])
    if log:
        lo, hi = math.log(lo), math.log(hi)
    sigma = (hi - lo) / 6 or 1e-12
    return NormalDist((lo + hi) / 2, sigma), lo, hi, log


def to_value(p: dict, u: float) -> float:
    """The parameter value at unit position ``u`` of the truncated (log-)normal."""
    d, lo, hi, log = _frame(p)
    a, b = d.cdf(lo), d.cdf(hi)
    z = d.inv_cdf(min(max(a + min(max(u, EPS), 1 - EPS) * (b - a), EPS), 1 - EPS))
    z = min(max(z, lo), hi)
    return math.exp(z) if log else z


def to_unit(p: dict, x: float) -> float:
    d, lo, hi, log = _frame(p)
    z = math.log(x) if log else x
    a, b = d.cdf(lo), d.cdf(hi)
    return min(max((d.cdf(min(max(z, lo), hi)) - a) / ((b - a) or 1.0), 0.0), 1.0)
