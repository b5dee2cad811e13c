"""MPIJob launch overhead: an mpi4py allreduce over 3 ranks as an MPIJob (launcher + 2 workers, the
launcher hosting a rank too) against ``mpirun -np 3`` on the same script directly.

Run by hand:  python benchmarks/mpijob.py [--repeat 5]

Starts a real ``ketch up`` (temporary KETCH_HOME, free loopback port). Per repetition it measures the
MPIJob from the create request to its Succeeded condition, and ``mpirun -np 3`` started and exited on
this machine (OpenMPI's local launch, no agent). What ketch adds (pods, ConfigMap, the pods/exec agent
starting each remote daemon) is the difference. Medians are printed with the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
SCRIPT = ROOT / "tests" / "training_scripts" / "mpi_allreduce.py"
BASE = "/apis/kubeflow.org/v2beta1/namespaces/default/mpijobs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job(name: str) -> dict:
    image = "mpioperator/mpi-pi:openmpi"
    return {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"name": name},
            "spec": {"runLauncherAsWorker": True, "runPolicy": {"cleanPodPolicy": "All"}, "mpiReplicaSpecs": {
                "Launcher": {"replicas": 1, "template": {"spec": {"containers": [
                    {"name": "launcher", "image": image, "command": ["mpirun", "-np", "3", sys.executable, str(SCRIPT)]}]}}},
                "Worker": {"replicas": 2, "template": {"spec": {"containers": [{"name": "worker", "image": image, "command": ["/usr/sbin/sshd", "-De"]}]}}}}}}


def run_job(c: httpx.Client, name: str) -> float:
    t0 = time.perf_counter()
    c.post(BASE, json=job(name)).raise_for_status()
    while True:
        conds = (c.get(f"{BASE}/{name}").json().get("status") or {}).get("conditions") or []
        if any(x["type"] == "Succeeded" and x["status"] == "True" for x in conds):
            return time.perf_counter() - t0
        if any(x["type"] == "Failed" and x["status"] == "True" for x in conds):
            raise SystemExit(f"job {name} failed: {conds}")
        time.sleep(0.01)


def run_mpirun() -> float:
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    t0 = time.perf_counter()
    subprocess.run(["mpirun", "--oversubscribe", "-np", "3", sys.executable, str(SCRIPT)], check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ketch-bench-mpi-"))
    port = free_port()
    env = {**os.environ, "KETCH_HOME": str(home), "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "ketch", "up", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(400):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        tokens = home / "tokens.csv"  # the admin token, once ketch has authentication
        token = next((ln.split(",")[0] for ln in tokens.read_text().splitlines() if ",admin" in ln), None) if tokens.exists() else None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers=headers) as c:
            for _ in range(100):
                if c.get("/apis/kubeflow.org/v2beta1").status_code == 200:
                    break
                time.sleep(0.05)
            run_job(c, "warmup")
            jobs, direct = [], []
            for i in range(a.repeat):
                jobs.append(run_job(c, f"bench-{i}"))
                direct.append(run_mpirun())
        m = statistics.median
        print(f"mpi4py allreduce over 3 ranks, median of {a.repeat} on {os.cpu_count()} CPUs:")
        print(f"  MPIJob create -> Succeeded (launcher + 2 workers) : {m(jobs):7.3f} s")
        print(f"  mpirun -np 3 directly                              : {m(direct):7.3f} s"
              f"   (job/mpirun = {m(jobs) / m(direct):.2f}x, +{m(jobs) - m(direct):.3f} s)")
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
