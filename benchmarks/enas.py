"""ENAS suggestion time per trial: the in-process controller's cost for each new trial (learn from the one
that finished, then sample the next architecture), on the nasConfig of tests/test_tuning_nas.py.

Run by hand:  python benchmarks/enas.py [--trials 50] [--train-steps 50]

Prints the first call (controller set-up, torch's lazy start) apart, then the median and 90th percentile
over the rest. Katib runs the same work in its suggestion pod behind a gRPC call.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--train-steps", type=int, default=50)
    a = ap.parse_args()
    from ketch.tuning.algorithms import ALGORITHMS, Entry
    from test_tuning_nas import NAS

    exp = {"metadata": {"uid": "12345678-0000"}, "spec": {"nasConfig": NAS, "objective": {"type": "maximize"}, "algorithm": {
        "algorithmName": "enas", "algorithmSettings": [{"name": "controller_train_steps", "value": str(a.train_steps)}]}}}
    enas, cache, history, times = ALGORITHMS["enas"], {}, [], []
    rng = random.Random(0)
    for i in range(a.trials):
        t0 = time.perf_counter()
        (assignment,) = enas.suggest(exp, history, [f"t{i}"], cache)
        times.append(time.perf_counter() - t0)
        history.append(Entry(f"t{i}", assignment, "complete", rng.random()))
    rest = sorted(times[1:])
    print(f"ENAS suggestion, {a.trials} trials, {a.train_steps} controller steps per finished trial:")
    print(f"  first call (set-up)  : {times[0] * 1000:8.1f} ms")
    print(f"  per trial, median    : {statistics.median(rest) * 1000:8.1f} ms")
    print(f"  per trial, p90       : {rest[int(0.9 * (len(rest) - 1))] * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
