"""Katib Experiments through ketch against optuna run directly, in one run.

    python benchmarks/tuning.py [--trials 50] [--quick]

1. Overhead per trial: an Experiment of N trials of a trivial objective (`python -c "print('loss=1')"`,
   batch Job trials, StdOut metrics, parallelTrialCount 1) through ketch with the local kubelet, against the
   same N evaluations through optuna in process and as subprocesses.
2. Best value found on Branin (optimum 0.397887) after N trials for random, tpe and cmaes, through ketch
   (parallelTrialCount 1, trials as real processes) and through optuna directly with the same sampler.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import ketch_server  # noqa: E402

BRANIN = ("import math,sys; a=dict(x.split('=') for x in sys.argv[1:]); x1,x2=float(a['x1']),float(a['x2']);"
          "print('loss=%r' % ((x2-5.1/(4*math.pi**2)*x1**2+5/math.pi*x1-6)**2+10*(1-1/(8*math.pi))*math.cos(x1)+10))")


def branin(x1: float, x2: float) -> float:
    return (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def experiment(name: str, algorithm: str, n: int, code: str, args: list[str], settings: list | None = None) -> dict:
    return {
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": algorithm, **({"algorithmSettings": settings} if settings else {})},
            "parallelTrialCount": 1, "maxTrialCount": n,
            "parameters": [{"name": "x1", "parameterType": "double", "feasibleSpace": {"min": "-5", "max": "10"}},
                           {"name": "x2", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "15"}}],
            "trialTemplate": {
                "primaryContainerName": "t",
                "trialParameters": [{"name": "x1", "reference": "x1"}, {"name": "x2", "reference": "x2"}],
                "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"restartPolicy": "Never",
                              "containers": [{"name": "t", "image": "python", "command": [sys.executable, "-c", code, *args]}]}}}},
            },
        },
    }


def run_experiment(h: httpx.Client, body: dict) -> tuple[float, dict]:
    name = body["metadata"]["name"]
    t0 = time.perf_counter()
    h.post("/apis/kubeflow.org/v1beta1/namespaces/default/experiments", json=body).raise_for_status()
    while True:
        e = h.get(f"/apis/kubeflow.org/v1beta1/namespaces/default/experiments/{name}").json()
        if any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True" for c in e.get("status", {}).get("conditions", [])):
            return time.perf_counter() - t0, e
        time.sleep(0.05)


def optuna_direct(sampler, n: int, objective) -> float:  # noqa: ANN001
    import optuna

    st = optuna.create_study(sampler=sampler)
    st.optimize(objective, n_trials=n)
    return st.best_value


def main() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="a short run that proves the benchmark works (3 trials)")
    a = ap.parse_args()
    n = 3 if a.quick else a.trials
    trivial = "print('loss=1')"
    with ketch_server() as k, k.http() as h:
        k_time, _ = run_experiment(h, experiment("overhead", "random", n, trivial, ["x1=${trialParameters.x1}", "x2=${trialParameters.x2}"]))
        t0 = time.perf_counter()
        optuna_direct(optuna.samplers.RandomSampler(seed=0), n, lambda t: (t.suggest_float("x1", -5, 10), t.suggest_float("x2", 0, 15), 1.0)[2])
        in_proc = time.perf_counter() - t0
        t0 = time.perf_counter()
        optuna_direct(optuna.samplers.RandomSampler(seed=0), n, lambda t: (t.suggest_float("x1", -5, 10), t.suggest_float("x2", 0, 15),
                                                                           float(subprocess.run([sys.executable, "-c", trivial], capture_output=True, text=True).stdout.split("=")[1]))[2])
        sub = time.perf_counter() - t0
        print(f"overhead, {n} trials of a trivial objective:")
        print(f"  ketch (Job trials, StdOut metrics): {k_time:.2f} s, {k_time / n * 1000:.0f} ms/trial")
        print(f"  optuna in process:                  {in_proc:.3f} s, {in_proc / n * 1000:.1f} ms/trial")
        print(f"  optuna with subprocesses:           {sub:.2f} s, {sub / n * 1000:.0f} ms/trial  (ketch/subprocess {k_time / sub:.2f}x)")
        print(f"best value on Branin (optimum 0.397887) after {n} trials, ketch vs optuna directly, same sampler and seed:")
        samplers = {"random": lambda: optuna.samplers.RandomSampler(seed=1), "tpe": lambda: optuna.samplers.TPESampler(seed=1),
                    "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=1, warn_independent_sampling=False)}
        for algo, mk in samplers.items():
            _, e = run_experiment(h, experiment(f"branin-{algo}", algo, n, BRANIN, ["x1=${trialParameters.x1}", "x2=${trialParameters.x2}"],
                                                [{"name": "random_state", "value": "1"}]))
            best = float(e["status"]["currentOptimalTrial"]["observation"]["metrics"][0]["min"])
            direct = optuna_direct(mk(), n, lambda t: branin(t.suggest_float("x1", -5, 10), t.suggest_float("x2", 0, 15)))
            print(f"  {algo:7s} ketch {best:8.4f}   optuna {direct:8.4f}")


if __name__ == "__main__":
    main()
