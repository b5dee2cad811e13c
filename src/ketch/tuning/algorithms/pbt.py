"""pbt: population-based training, a reasonable single-machine version with Katib's settings
(``n_population`` >= 5, ``truncation_threshold`` in (0, 1), ``resample_probability``, ``suggestion_trial_dir``).

Generation 0 is ``n_population`` random members. After that every new member exploits a parent drawn from
the best ``truncation_threshold`` fraction of the latest ``n_population`` finished members, and explores:
each numeric value is multiplied by 0.8 or 1.2 (clipped to the space), or, with ``resample_probability``,
drawn afresh; categorical values are resampled with that probability. Each suggestion carries Katib's labels
``pbt.suggestion.katib.kubeflow.org/generation`` and ``.../parent`` (on the Trial), and trial code finds its
parent's checkpoints under ``<suggestion_trial_dir>/<parent trial name>``.
"""

from __future__ import annotations

import random
from typing import Any

from ketch.tuning.algorithms.base import Algorithm, Entry, as_float, as_int, fmt, parse, unit_to_value

GEN = "pbt.suggestion.katib.kubeflow.org/generation"
PARENT = "pbt.suggestion.katib.kubeflow.org/parent"


class PBT(Algorithm):
    settings = {"suggestion_trial_dir": lambda v: None if v else "must not be empty", "n_population": as_int(5),
                "truncation_threshold": as_float(0, 1, open_lo=True, open_hi=True), "resample_probability": as_float(0, 1),
                "random_state": as_int(0)}
    required = ("suggestion_trial_dir", "n_population", "truncation_threshold")

    def suggest(self, exp: dict, history: list[Entry], names: list[str], cache: dict[str, Any]) -> list[Any]:
        spec = exp["spec"]
        st = {s["name"]: s.get("value", "") for s in spec["algorithm"].get("algorithmSettings") or []}
        npop, trunc = int(st["n_population"]), float(st["truncation_threshold"])
        resample = float(st["resample_probability"]) if st.get("resample_probability") else None
        params = spec["parameters"]
        maximize = spec["objective"]["type"] == "maximize"
        rng = random.Random(int(st.get("random_state", "0")) * 7919 + len(history))
        gens = {e.name: int(e.labels.get(GEN, "0")) for e in history}
        out: list[Any] = []
        for _ in names:
            if len(history) + len(out) < npop:
                out.append(({p["name"]: fmt(p, unit_to_value(p, rng.random())) for p in params}, {GEN: "0"}))
                continue
            done = [e for e in history if e.state == "complete" and e.value is not None][-npop:]
            if not done:
                return out  # wait for the first generation's results
            done.sort(key=lambda e: e.value, reverse=maximize)  # type: ignore[arg-type, return-value]
            parent = rng.choice(done[: max(1, int(len(done) * trunc))])
            child = {}
            for p in params:
                v = parent.assignments.get(p["name"])
                fresh = unit_to_value(p, rng.random())
                if p["parameterType"] in ("categorical", "discrete") or v is None:
                    child[p["name"]] = fmt(p, fresh if v is None or (resample is not None and rng.random() < resample) else v)
                elif resample is not None and rng.random() < resample:
                    child[p["name"]] = fmt(p, fresh)
                else:
                    fs = p["feasibleSpace"]
                    x = parse(p, v) * rng.choice((0.8, 1.2))
                    child[p["name"]] = fmt(p, min(max(x, float(fs["min"])), float(fs["max"])))
            out.append((child, {GEN: str(gens.get(parent.name, 0) + 1), PARENT: parent.name}))
        return out

    def exhausted(self, exp: dict, history: list[Entry]) -> bool:
        return False  # a population evolves until the experiment's budget or goal ends it


ALGORITHMS = {"pbt": PBT()}
