"""A Deployment of N replicas against N bare Pods, in the same run of one ``ketch up``.

Run by hand:  python benchmarks/deployments.py [--n 100]

Figures (wall-clock seconds, each from just before the first request):
- bare Pods: N Pods (``sleep``) created, until all are Ready; then "replaced": all deleted and N new ones
  created, until the new ones are all Ready (what a rollout does by hand, with no availability kept);
- Deployment: created with N replicas, until ``status.readyReplicas`` = N (create -> all Ready);
  then a rolling update (the image changed; default 25% surge / 25% unavailable), until the rollout is
  complete as ``kubectl rollout status`` judges it (observedGeneration, updated = available = N, no old
  Pods left).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"
NS = "bench"
CMD = ["sleep", "3600"]


def _headers(home: Path) -> dict[str, str]:
    """The admin token, where ketch writes one (``KETCH_HOME/tokens.csv``)."""
    p = home / "tokens.csv"
    for line in p.read_text().splitlines() if p.exists() else []:
        parts = line.split(",")
        if len(parts) >= 2 and parts[1] == "admin":
            return {"Authorization": f"Bearer {parts[0]}"}
    return {}


def _wait(fn, timeout: float = 600, every: float = 0.05):  # noqa: ANN001, ANN202
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError("benchmark step did not finish")


def _ready(p: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or [])


def bare_pods(c: httpx.Client, n: int, tag: str) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        r = c.post(f"/api/v1/namespaces/{NS}/pods", json={
            "metadata": {"name": f"bare-{tag}-{i}", "labels": {"run": f"bare-{tag}"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": CMD}]}})
        r.raise_for_status()
    _wait(lambda: sum(_ready(p) for p in c.get(f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": f"run=bare-{tag}"}).json()["items"]) == n)
    return time.perf_counter() - t0


def replace_bare(c: httpx.Client, n: int) -> float:
    t0 = time.perf_counter()
    c.delete(f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": "run=bare-a"}).raise_for_status()
    dt = bare_pods(c, n, "b")
    return time.perf_counter() - t0 if dt else 0.0


def deployment(c: httpx.Client, n: int) -> tuple[float, float]:
    base = f"/apis/apps/v1/namespaces/{NS}/deployments"
    t0 = time.perf_counter()
    c.post(base, json={"metadata": {"name": "web"}, "spec": {
        "replicas": n, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1", "command": CMD}]}}}}).raise_for_status()
    _wait(lambda: (c.get(f"{base}/web").json().get("status") or {}).get("readyReplicas") == n)
    created = time.perf_counter() - t0
    t1 = time.perf_counter()
    c.patch(f"{base}/web", json={"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}},
            headers={"Content-Type": "application/strategic-merge-patch+json"}).raise_for_status()

    def done() -> bool:
        d = c.get(f"{base}/web").json()
        st = d.get("status") or {}
        return (st.get("observedGeneration", 0) >= d["metadata"]["generation"] and st.get("updatedReplicas") == n
                and st.get("replicas") == n and st.get("availableReplicas") == n)

    _wait(done)
    return created, time.perf_counter() - t1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix="ketch-bench-"))
    env = {**os.environ, "KETCH_HOME": str(home), "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "ketch", "up", "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=open(home / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        with httpx.Client(base_url=url, timeout=120, headers=_headers(home)) as c:
            c.post("/api/v1/namespaces", json={"metadata": {"name": NS}}).raise_for_status()
            bare = bare_pods(c, a.n, "a")
            replaced = replace_bare(c, a.n)
            c.delete(f"/api/v1/namespaces/{NS}/pods", params={"labelSelector": "run=bare-b"})
            _wait(lambda: not c.get(f"/api/v1/namespaces/{NS}/pods").json()["items"], every=0.2)
            created, rolled = deployment(c, a.n)
        print(f"{a.n} bare Pods, create -> all Ready:        {bare:7.2f} s")
        print(f"{a.n} bare Pods, delete + recreate -> Ready: {replaced:7.2f} s")
        print(f"Deployment x{a.n}, create -> all Ready:      {created:7.2f} s  ({created / bare:.2f}x bare)")
        print(f"Deployment x{a.n}, rolling update -> done:   {rolled:7.2f} s  ({rolled / replaced:.2f}x delete+recreate)")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
