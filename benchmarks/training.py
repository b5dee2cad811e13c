"""A 4-replica PyTorchJob against launching the same DDP script directly, in one run.

Run by hand:  python benchmarks/training.py [--repeat 3] [--steps 30] [--quick]

Starts a real ``ketch up`` (temporary KETCH_HOME, free loopback port) and measures, per repetition:
- PyTorchJob (Master + 3 Workers, each ``python tests/training_scripts/ddp_train.py``, gloo): time from the
  create request to all 4 replica pods Running, and to the job's Succeeded condition;
- reference 1: ``torchrun --standalone --nproc-per-node 4`` on the same script, start to exit;
- reference 2: the 4 processes started directly with the env the job would set, start to all exited.
What ketch adds is the difference. Medians are printed, plus the ratio against each reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "training_scripts" / "ddp_train.py"
sys.path.insert(0, str(ROOT / "benchmarks"))
from _server import KetchServer, free_port, ketch_server  # noqa: E402


def job(name: str, steps: int) -> dict:
    def rs(n: int) -> dict:
        c = {"name": "pytorch", "image": "python:3.11", "command": [sys.executable, str(SCRIPT)], "env": [{"name": "STEPS", "value": str(steps)}]}
        return {"replicas": n, "restartPolicy": "Never", "template": {"spec": {"containers": [c]}}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": {"Master": rs(1), "Worker": rs(3)}}}


def run_job(c: httpx.Client, name: str, steps: int) -> tuple[float, float]:
    base = "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs"
    t0 = time.perf_counter()
    r = c.post(base, json=job(name, steps))
    r.raise_for_status()
    all_running = None
    while True:
        pods = c.get("/api/v1/namespaces/default/pods", params={"labelSelector": f"training.kubeflow.org/job-name={name}"}).json()["items"]
        if all_running is None and len(pods) == 4 and all((p.get("status") or {}).get("phase") in ("Running", "Succeeded") for p in pods):
            all_running = time.perf_counter() - t0
        conds = (c.get(f"{base}/{name}").json().get("status") or {}).get("conditions") or []
        if any(x["type"] == "Succeeded" and x["status"] == "True" for x in conds):
            return all_running or time.perf_counter() - t0, time.perf_counter() - t0
        if any(x["type"] == "Failed" and x["status"] == "True" for x in conds):
            raise SystemExit(f"job {name} failed: {conds}")
        time.sleep(0.01)


def run_torchrun(steps: int) -> float:
    exe = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    t0 = time.perf_counter()
    subprocess.run([exe, "--standalone", "--nproc-per-node", "4", str(SCRIPT)], check=True, capture_output=True,
                   env={**os.environ, "STEPS": str(steps)})
    return time.perf_counter() - t0


def run_direct(steps: int) -> float:
    port = free_port()
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(SCRIPT)], stdout=subprocess.DEVNULL, env={
        **os.environ, "STEPS": str(steps), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "4", "RANK": str(r)})
        for r in range(4)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("direct run failed")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="a short run that proves the benchmark works (--repeat 1 --steps 3)")
    a = ap.parse_args()
    if a.quick:
        a.repeat, a.steps = 1, 3

    def served(k: KetchServer) -> bool:
        with k.http(timeout=5) as c:
            return c.get("/apis/kubeflow.org/v1").status_code == 200

    with ketch_server(ready=served) as k:
        with k.http(timeout=30) as c:
            run_job(c, "warmup", a.steps)
            running, done, tr, direct = [], [], [], []
            for i in range(a.repeat):
                r, d = run_job(c, f"bench-{i}", a.steps)
                running.append(r)
                done.append(d)
                tr.append(run_torchrun(a.steps))
                direct.append(run_direct(a.steps))
        m = statistics.median
        print(f"4-replica PyTorchJob (DDP gloo, {a.steps} steps), median of {a.repeat} on {os.cpu_count()} CPUs:")
        print(f"  create -> all 4 replicas Running : {m(running):7.3f} s")
        print(f"  create -> Succeeded              : {m(done):7.3f} s")
        print(f"  torchrun --nproc-per-node 4      : {m(tr):7.3f} s   (job/torchrun = {m(done) / m(tr):.2f}x, +{m(done) - m(tr):.3f} s)")
        print(f"  4 processes started directly     : {m(direct):7.3f} s   (job/direct   = {m(done) / m(direct):.2f}x, +{m(done) - m(direct):.3f} s)")


if __name__ == "__main__":
    main()
