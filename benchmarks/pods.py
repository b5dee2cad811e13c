"""Pod latency and throughput on the local kubelet, against starting the same process directly.

Run by hand:  python benchmarks/pods.py [--n 200] [--repeat 10] [--quick]

Starts a real ``ketch up`` (temporary KETCH_HOME, free loopback port) and, in the same run:
- latency from Pod create (HTTP POST returned... measured from just before it) to phase Running and to
  Succeeded, for ``python -c pass`` and for ``true``, seen through a watch stream;
- the same commands started directly with subprocess (the reference: what ketch adds is the difference);
- throughput: N short pods (``true``) created at once, time until all Succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import KetchServer, ketch_server  # noqa: E402


class Watcher(threading.Thread):
    """Records the first time each pod is seen Running and Succeeded/Failed."""

    def __init__(self, k: KetchServer, ns: str) -> None:
        super().__init__(daemon=True)
        self.k, self.ns = k, ns
        self.running: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.phase: dict[str, str] = {}
        self.ready = threading.Event()
        self.cv = threading.Condition()

    def run(self) -> None:
        try:
            self._run()
        except httpx.HTTPError:
            pass  # the server went away at the end of the run

    def _run(self) -> None:
        with self.k.http(timeout=None) as c, c.stream("GET", f"/api/v1/namespaces/{self.ns}/pods", params={"watch": "true"}) as r:
            self.ready.set()
            for line in r.iter_lines():
                if not line:
                    continue
                ev = json.loads(line)
                o = ev["object"]
                name, ph = o["metadata"]["name"], (o.get("status") or {}).get("phase")
                t = time.perf_counter()
                with self.cv:
                    if ph in ("Running", "Succeeded", "Failed"):
                        self.running.setdefault(name, t)  # a fast pod may skip Running in the stream
                    if ph in ("Succeeded", "Failed"):
                        self.finished.setdefault(name, t)
                        self.phase[name] = ph
                    self.cv.notify_all()

    def wait(self, names: list[str], timeout: float = 600) -> None:
        deadline = time.time() + timeout
        with self.cv:
            while not all(n in self.finished for n in names):
                if time.time() > deadline:
                    raise TimeoutError(f"{sum(n in self.finished for n in names)}/{len(names)} pods finished")
                self.cv.wait(1)


def pod(name: str, command: list[str]) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "python", "command": command}]}}


def direct(command: list[str], repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(command, check=True)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="pods in the throughput run")
    ap.add_argument("--repeat", type=int, default=10, help="samples per latency figure")
    ap.add_argument("--quick", action="store_true", help="a short run that proves the benchmark works (--n 10 --repeat 2)")
    a = ap.parse_args()
    if a.quick:
        a.n, a.repeat = 10, 2
    prof = ["-m", "cProfile", "-o", os.environ["KETCH_BENCH_PROFILE"]] if os.environ.get("KETCH_BENCH_PROFILE") else []
    with ketch_server(python_args=prof) as k, k.http() as c:
        c.post("/api/v1/namespaces", json={"metadata": {"name": "bench"}})
        w = Watcher(k, "bench")
        w.start()
        w.ready.wait(10)
        time.sleep(0.2)
        print(f"{'command':<22} {'direct':>9} {'->Running':>10} {'->Succeeded':>12} {'overhead':>9}")
        for label, cmd in (("python -c pass", [sys.executable, "-c", "pass"]), ("true", ["true"])):
            ref = direct(cmd, a.repeat)
            run_l, done_l = [], []
            for i in range(a.repeat):
                name = f"lat-{label.split()[0]}-{i}"
                t0 = time.perf_counter()
                r = c.post("/api/v1/namespaces/bench/pods", json=pod(name, cmd))
                r.raise_for_status()
                w.wait([name], 60)
                run_l.append(w.running[name] - t0)
                done_l.append(w.finished[name] - t0)
                assert w.phase[name] == "Succeeded", w.phase[name]
            rm, dm = statistics.median(run_l), statistics.median(done_l)
            print(f"{label:<22} {ref*1000:8.1f}ms {rm*1000:9.1f}ms {dm*1000:11.1f}ms {dm/ref:8.1f}x")
        names = [f"tp-{i}" for i in range(a.n)]
        t0 = time.perf_counter()
        for n in names:
            c.post("/api/v1/namespaces/bench/pods", json=pod(n, ["true"])).raise_for_status()
        t_created = time.perf_counter() - t0
        w.wait(names, 600)
        total = time.perf_counter() - t0
        t_direct = time.perf_counter()
        for _ in range(a.n):
            subprocess.run(["true"], check=True)
        t_direct = time.perf_counter() - t_direct
        ok = sum(w.phase[n] == "Succeeded" for n in names)
        print(f"throughput: {a.n} pods (`true`) created in {t_created:.2f}s, all finished in {total:.2f}s "
              f"= {a.n/total:.1f} pods/s ({ok}/{a.n} Succeeded); {a.n} direct `true` runs: {t_direct:.2f}s "
              f"= {a.n/t_direct:.0f}/s")


if __name__ == "__main__":
    main()
