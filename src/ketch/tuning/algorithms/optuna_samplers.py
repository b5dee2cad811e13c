"""Algorithms that are optuna samplers: random, tpe, multivariate-tpe, cmaes and bayesianoptimization.

One live optuna study per experiment is kept in the cache and driven by ask/tell, so samplers that carry
state between generations (CMA-ES) work as designed. After a restart the study is rebuilt from the trials'
assignments and outcomes (``add_trial``), which is all TPE, random and GP need; CMA-ES then restarts its
search distribution from the best of what it sees.
"""

from __future__ import annotations

import math
from typing import Any

from ketch.tuning.algorithms import priors
from ketch.tuning.algorithms.base import Algorithm, Entry, as_float, as_int, fmt, one_of, parse, settings_of


def _dists(params: list[dict]) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for p in params:
        fs = p.get("feasibleSpace") or {}
        log = fs.get("distribution") == "logUniform"
        if priors.is_normal(p):
            out[p["name"]] = FloatDistribution(0.0, 1.0)  # the unit position under the prior (priors.py)
        elif p["parameterType"] == "int":
            step = int(float(fs.get("step") or 1))
            out[p["name"]] = IntDistribution(int(float(fs["min"])), int(float(fs["max"])), log=log and step == 1, step=step if not log else 1)
        elif p["parameterType"] == "double":
            step = float(fs["step"]) if fs.get("step") and not log else None
            lo, hi = float(fs["min"]), float(fs["max"])
            if step is not None:
                hi = lo + math.floor((hi - lo) / step + 1e-9) * step
            out[p["name"]] = FloatDistribution(lo, hi, log=log, step=step)
        else:
            out[p["name"]] = CategoricalDistribution(list(fs.get("list") or []))
    return out


class OptunaAlgorithm(Algorithm):
    def sampler(self, settings: dict[str, str], seed: int | None, params: list[dict]) -> Any:
        raise NotImplementedError

    def _seed(self, exp: dict, settings: dict[str, str]) -> int:
        if "random_state" in settings:
            return int(settings["random_state"])
        return int(exp["metadata"]["uid"].replace("-", "")[:8], 16)

    def suggest(self, exp: dict, history: list[Entry], names: list[str], cache: dict[str, Any]) -> list[dict[str, str]]:
        import optuna
        from optuna.trial import TrialState, create_trial

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        spec = exp["spec"]
        params = spec["parameters"]
        by_name = {p["name"]: p for p in params}
        dists = _dists(params)
        settings = settings_of(exp)
        if "study" not in cache:
            direction = "maximize" if spec["objective"]["type"] == "maximize" else "minimize"
            cache["study"] = optuna.create_study(direction=direction, sampler=self.sampler(settings, self._seed(exp, settings), params))
            cache["numbers"] = {}
            cache["told"] = set()
        study = cache["study"]
        numbers: dict[str, int] = cache["numbers"]
        told: set[str] = cache["told"]
        for e in history:
            done = e.state in ("complete", "failed")
            if e.name not in numbers:
                try:
                    values = {k: _to_sampler(by_name[k], parse(by_name[k], v)) for k, v in e.assignments.items() if k in by_name}
                    state = TrialState.COMPLETE if e.state == "complete" and e.value is not None else TrialState.FAIL if done else TrialState.RUNNING
                    study.add_trial(create_trial(params=values, distributions={k: dists[k] for k in values}, state=state,
                                                 value=e.value if state == TrialState.COMPLETE else None))
                except (ValueError, KeyError):
                    continue  # an assignment outside today's space: nothing to learn from it
                numbers[e.name] = len(study.trials) - 1
                if done:
                    told.add(e.name)
            elif done and e.name not in told:
                if e.state == "complete" and e.value is not None and math.isfinite(e.value):
                    study.tell(numbers[e.name], e.value)
                else:
                    study.tell(numbers[e.name], state=TrialState.FAIL)
                told.add(e.name)
        out = []
        for name in names:
            t = study.ask(dists)
            numbers[name] = t.number
            out.append({k: fmt(by_name[k], _from_sampler(by_name[k], t.params[k])) for k in by_name})
        return out


def _to_sampler(p: dict, v: Any) -> Any:
    return priors.to_unit(p, float(v)) if priors.is_normal(p) else v


def _from_sampler(p: dict, v: Any) -> Any:
    return priors.to_value(p, v) if priors.is_normal(p) else v


class Random(OptunaAlgorithm):
    settings = {"random_state": as_int(0)}
    distributions = ("uniform", "logUniform", *priors.NORMAL)

    def sampler(self, settings, seed, params):  # noqa: ANN001, ANN201
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)


class TPE(OptunaAlgorithm):
    """Katib's hyperopt TPE settings, mapped onto optuna's TPESampler."""

    settings = {"gamma": as_float(0, 1, open_lo=True, open_hi=True), "prior_weight": as_float(0, open_lo=True),
                "n_EI_candidates": as_int(1), "n_startup_trials": as_int(0), "random_state": as_int(0)}
    distributions = ("uniform", "logUniform", *priors.NORMAL)

    def sampler(self, settings, seed, params):  # noqa: ANN001, ANN201
        import optuna

        kw: dict[str, Any] = {"seed": seed, "n_startup_trials": int(settings.get("n_startup_trials", 10))}
        if "gamma" in settings:
            g = float(settings["gamma"])
            kw["gamma"] = lambda n, g=g: min(int(math.ceil(g * n)), 25)
        if "prior_weight" in settings:
            kw["prior_weight"] = float(settings["prior_weight"])
        if "n_EI_candidates" in settings:
            kw["n_ei_candidates"] = int(settings["n_EI_candidates"])
        return optuna.samplers.TPESampler(**kw)


class MultivariateTPE(OptunaAlgorithm):
    settings = {"n_startup_trials": as_int(0), "n_ei_candidates": as_int(1), "random_state": as_int(0)}

    def sampler(self, settings, seed, params):  # noqa: ANN001, ANN201
        import warnings

        import optuna

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=int(settings.get("n_startup_trials", 10)),
                                          n_ei_candidates=int(settings.get("n_ei_candidates", 24)))


class CmaEs(OptunaAlgorithm):
    settings = {"random_state": as_int(0), "sigma": as_float(0, open_lo=True), "restart_strategy": one_of("none", "ipop", "bipop")}

    def extra_checks(self, settings, spec, params):  # noqa: ANN001, ANN201
        if sum(1 for p in params if p.get("parameterType") in ("int", "double")) < 2:
            return [("", "cmaes needs at least 2 int or double parameters")]
        return []

    def sampler(self, settings, seed, params):  # noqa: ANN001, ANN201
        import warnings

        import optuna

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        rs = settings.get("restart_strategy", "none")
        kw: dict[str, Any] = {"seed": seed, "warn_independent_sampling": False}
        if "sigma" in settings:
            kw["sigma0"] = float(settings["sigma"])
        if rs != "none":
            kw["restart_strategy"] = rs
        return optuna.samplers.CmaEsSampler(**kw)


class BayesianOptimization(OptunaAlgorithm):
    """Katib's skopt settings on optuna's GPSampler: a Gaussian process with log expected improvement
    (``base_estimator`` must be GP; ``acq_func``/``acq_optimizer`` are accepted and ignored)."""

    settings = {"base_estimator": one_of("GP"), "n_initial_points": as_int(1), "acq_func": one_of("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"),
                "acq_optimizer": one_of("auto", "sampling", "lbfgs"), "random_state": as_int(0)}

    def sampler(self, settings, seed, params):  # noqa: ANN001, ANN201
        import warnings

        import optuna

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=int(settings.get("n_initial_points", 10)))


ALGORITHMS = {
    "random": Random(),
    "tpe": TPE(),
    "multivariate-tpe": MultivariateTPE(),
    "cmaes": CmaEs(),
    "bayesianoptimization": BayesianOptimization(),
}
