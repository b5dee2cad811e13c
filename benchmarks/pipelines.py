"""Pipelines on ketch vs kfp.local (SubprocessRunner), same pipelines, same machine, one invocation.

    python benchmarks/pipelines.py [--only chain,fanout,sklearn] [--skip-local] [--quick]

Pipelines: a 20-task chain of trivial components, a 20-wide ParallelFor fan-out with a Collected fan-in
(of trivial tasks, and of tasks that each wait 0.5 s, to show them overlapping), and a small scikit-learn
training pipeline (data -> train -> evaluate, with artifacts). ketch runs every task
as a Pod through its kubelet and is driven with kfp.Client, the wall time measured from submission to the
run's end. Per-task overhead = wall time / number of tasks for the chain of no-op components (the work is
nil, so it is all overhead). Prints the figures and the ketch/kfp.local ratios.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from _server import ketch_server  # noqa: E402
from kfp import dsl  # noqa: E402
from kfp.dsl import Dataset, Input, Metrics, Model, Output  # noqa: E402

N = 20


@dsl.component
def inc(x: int) -> int:
    return x + 1


@dsl.pipeline
def chain(x: int = 0) -> int:
    t = inc(x=x)
    for _ in range(N - 1):
        t = inc(x=t.output)
    return t.output


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.component
def total(xs: list) -> int:
    return int(sum(xs))


@dsl.pipeline
def fanout() -> int:
    with dsl.ParallelFor(list(range(N))) as i:
        s = square(x=i)
    return total(xs=dsl.Collected(s.output)).output


@dsl.component
def wait(x: int, seconds: float) -> int:
    import time

    time.sleep(seconds)
    return x


WAIT = 0.5


@dsl.pipeline
def fanout_wait() -> int:
    with dsl.ParallelFor(list(range(N))) as i:
        s = wait(x=i, seconds=WAIT)
    return total(xs=dsl.Collected(s.output)).output


@dsl.component(packages_to_install=["scikit-learn"])
def load_data(data: Output[Dataset]):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    import json

    with open(data.path, "w") as f:
        json.dump({"X": X.tolist(), "y": y.tolist()}, f)


@dsl.component(packages_to_install=["scikit-learn"])
def train(data: Input[Dataset], model: Output[Model], c: float = 1.0):
    import json
    import pickle

    from sklearn.linear_model import LogisticRegression

    d = json.load(open(data.path))
    m = LogisticRegression(C=c, max_iter=500).fit(d["X"], d["y"])
    with open(model.path, "wb") as f:
        pickle.dump(m, f)


@dsl.component(packages_to_install=["scikit-learn"])
def evaluate(data: Input[Dataset], model: Input[Model], metrics: Output[Metrics]) -> float:
    import json
    import pickle

    d = json.load(open(data.path))
    m = pickle.load(open(model.path, "rb"))
    acc = float(m.score(d["X"], d["y"]))
    metrics.log_metric("accuracy", acc)
    return acc


@dsl.pipeline
def sklearn_pipeline() -> float:
    d = load_data()
    m = train(data=d.outputs["data"])
    return evaluate(data=d.outputs["data"], model=m.outputs["model"]).outputs["Output"]


CASES = {"chain": (chain, N), "fanout": (fanout, N + 1), "fanout_wait": (fanout_wait, N + 1), "sklearn": (sklearn_pipeline, 3)}


def run_ketch(names: list[str]) -> dict[str, float]:
    with ketch_server() as k:
        c = k.kfp_client()  # kfp.Client(host=..., existing_token=<the admin token>)
        out = {}
        for name in names:
            func, _ = CASES[name]
            c.create_run_from_pipeline_func(func, enable_caching=False)  # warm-up (imports, page cache)
            t0 = time.perf_counter()
            rid = c.create_run_from_pipeline_func(func, enable_caching=False).run_id
            while (r := c.get_run(rid)).state not in ("SUCCEEDED", "FAILED", "CANCELED"):
                time.sleep(0.05)
            out[name] = time.perf_counter() - t0
            if r.state != "SUCCEEDED":
                raise RuntimeError(f"ketch run of {name} ended {r.state}: {r.error}")
        return out


def run_local(names: list[str]) -> dict[str, float]:
    from kfp import local

    root = tempfile.mkdtemp(prefix="kfp-local-bench-")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
    out = {}
    try:
        for name in names:
            func, _ = CASES[name]
            t0 = time.perf_counter()
            func()
            out[name] = time.perf_counter() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="chain,fanout,fanout_wait,sklearn")
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a short run that proves the benchmark works (the chain alone)")
    a = ap.parse_args()
    names = ["chain"] if a.quick else [n for n in a.only.split(",") if n]
    k = run_ketch(names)
    devnull = open(os.devnull, "w")
    if a.skip_local:
        loc = {}
    else:
        saved = sys.stdout
        sys.stdout = devnull  # kfp.local prints every task's log
        try:
            loc = run_local(names)
        finally:
            sys.stdout = saved
    print(f"{'pipeline':<10} {'tasks':>5} {'ketch s':>9} {'kfp.local s':>12} {'ketch/task':>11} {'local/task':>11} {'ratio':>7}")
    for n in names:
        tasks = CASES[n][1]
        lk, ll = k[n], loc.get(n)
        ratio = f"{lk / ll:7.2f}" if ll else "      -"
        lls = f"{ll:12.2f}" if ll else "           -"
        llt = f"{ll / tasks:11.3f}" if ll else "          -"
        print(f"{n:<10} {tasks:>5} {lk:9.2f} {lls} {lk / tasks:11.3f} {llt} {ratio}")
    if "chain" in k and "chain" in loc:
        print(f"\nper-task overhead (20-task no-op chain): ketch {k['chain'] / N * 1000:.0f} ms, kfp.local {loc['chain'] / N * 1000:.0f} ms "
              f"-> ketch is {loc['chain'] / k['chain']:.1f}x lower (target >= 10x)")
    if "fanout" in k:
        print(f"fan-out: ketch {k['fanout']:.2f}s for {N + 1} tasks vs its own serial chain estimate {k.get('chain', 0) / N * (N + 1):.2f}s")
    if "fanout_wait" in k:
        serial = N * WAIT + k.get("chain", 0) / N * (N + 1)
        print(f"fan-out of {N} tasks waiting {WAIT}s each: ketch {k['fanout_wait']:.2f}s; run one by one it would take at least "
              f"{serial:.2f}s (the waits plus ketch's own per-task cost): the tasks overlap")


if __name__ == "__main__":
    main()
