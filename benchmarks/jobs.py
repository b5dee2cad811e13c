"""Throughput of short batch/v1 Jobs through ketch (Job controller + local kubelet), against starting the same
processes directly with the same concurrency, in one run.

    python benchmarks/jobs.py [--jobs 200] [--command "python -c pass"] [--quick]

Prints jobs/s through ketch, processes/s directly, and the ratio (ketch's overhead per job).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import ketch_server  # noqa: E402


def through_ketch(n: int, cmd: list[str]) -> tuple[float, int]:
    with ketch_server({"KETCH_JOB_BACKOFF_SECONDS": "0.1"}) as k, k.http() as h:
        h.post("/api/v1/namespaces", json={"metadata": {"name": "bench"}})
        t0 = time.perf_counter()
        for i in range(n):
            r = h.post("/apis/batch/v1/namespaces/bench/jobs", json={
                "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"j{i}"},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "python", "command": cmd}]}}}})
            r.raise_for_status()
        done, running_max = 0, 0
        while done < n:
            items = h.get("/apis/batch/v1/namespaces/bench/jobs").json()["items"]
            done = sum(1 for j in items if any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in j.get("status", {}).get("conditions", [])))
            running_max = max(running_max, sum(j.get("status", {}).get("active", 0) for j in items))
            time.sleep(0.05)
        return time.perf_counter() - t0, running_max


def direct(n: int, cmd: list[str], concurrency: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, concurrency)) as ex:
        list(ex.map(lambda _: subprocess.run(cmd, check=True), range(n)))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--command", default=f"{sys.executable} -c pass")
    ap.add_argument("--quick", action="store_true", help="a short run that proves the benchmark works (10 jobs)")
    a = ap.parse_args()
    if a.quick:
        a.jobs = 10
    cmd = shlex.split(a.command)
    k_time, conc = through_ketch(a.jobs, cmd)
    d_time = direct(a.jobs, cmd, conc)
    print(f"{a.jobs} Jobs of `{a.command}` through ketch: {k_time:.2f} s, {a.jobs / k_time:.1f} jobs/s (peak {conc} pods running at once)")
    print(f"same processes started directly, {conc} at a time: {d_time:.2f} s, {a.jobs / d_time:.1f} processes/s")
    print(f"ratio ketch/direct: {k_time / d_time:.2f}x; overhead per job: {(k_time - d_time) / a.jobs * 1000:.0f} ms")


if __name__ == "__main__":
    main()
