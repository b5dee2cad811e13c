"""Pod start through the container runtime (RuntimeClass podman) against ``podman run`` of the same image
directly, next to the process path.

    python benchmarks/containers.py [--runs 5] [--image localhost/ketch-test-busybox:1]

For each path the figure is the median time from the request (Pod create, or ``podman run``) until the
container's command has run (it creates a file in a hostPath volume / bind mount, polled every 5 ms), and
for the ketch paths also until the Pod reports Running (for a container: when the engine's client has
started, before the container runs). The three are interleaved with ketch up and each run ends (the Pod
deleted and gone) before the next starts, so the load of a shared machine falls on all alike. The container path's overhead is its figure minus
``podman run``'s (target: within 50 ms). Needs podman with runc and the busybox test image that
tests/test_pods_containers.py builds; set CONTAINERS_CONF as those tests do where podman's defaults
exceed the machine's limits.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _token(home: Path) -> str | None:
    p = home / "tokens.csv"
    if p.exists():
        for line in p.read_text().splitlines():
            parts = line.split(",")
            if len(parts) >= 2 and parts[1] == "admin":
                return parts[0]
    return None


def wait_file(p: Path, timeout: float = 60) -> float:
    deadline = time.perf_counter() + timeout
    while not p.exists():
        if time.perf_counter() > deadline:
            raise TimeoutError(p)
        time.sleep(0.005)
    return time.perf_counter()


def podman_direct(image: str, marks: Path, name: str) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen(["podman", "run", "--rm", "--network", "host", "--pull", "never", "-v", f"{marks}:/marks", "--", image,
                          "sh", "-c", f"touch /marks/{name}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t1 = wait_file(marks / name)
    p.wait()
    time.sleep(0.3)
    return t1 - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", default="localhost/ketch-test-busybox:1")
    a = ap.parse_args()
    marks = Path(tempfile.mkdtemp(prefix="ketch-bench-marks-"))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as h:
        home = Path(h)
        env = {**os.environ, "KETCH_HOME": h, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.Popen([sys.executable, "-m", "ketch", "up", "--port", str(port), "--log-level", "warning"], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(home / "server.log", "wb"), start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(400):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {_token(home)}"} if _token(home) else {}, timeout=30)
            c.post("/apis/node.k8s.io/v1/runtimeclasses", json={"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                                                                 "metadata": {"name": "podman"}, "handler": "podman"}).raise_for_status()
            figures: dict[str, tuple[list[float], list[float]]] = {"process": ([], []), "container": ([], [])}
            direct = []
            for i in range(a.runs + 1):  # interleaved, with ketch up, so load on a shared machine hits all alike
                d = podman_direct(a.image, marks, f"direct-{i}")
                if i:
                    direct.append(d)
                for path in ("process", "container"):
                    ran, running = figures[path]
                    name = f"{path}-{i}"
                    spec = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                            "volumes": [{"name": "m", "hostPath": {"path": str(marks)}}],
                            "containers": [{"name": "main", "image": a.image, "command": ["sh", "-c", f"touch /marks/{name}"],
                                            "volumeMounts": [{"name": "m", "mountPath": "/marks"}]}]}
                    if path == "container":
                        spec["runtimeClassName"] = "podman"
                    t0 = time.perf_counter()
                    c.post("/api/v1/namespaces/default/pods", json={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}).raise_for_status()
                    t_run = None
                    while t_run is None:
                        st = c.get(f"/api/v1/namespaces/default/pods/{name}").json().get("status") or {}
                        if st.get("phase") in ("Running", "Succeeded", "Failed"):
                            t_run = time.perf_counter()
                        else:
                            time.sleep(0.005)
                    t_file = wait_file(marks / name)
                    while (c.get(f"/api/v1/namespaces/default/pods/{name}").json().get("status") or {}).get("phase") != "Succeeded":
                        time.sleep(0.02)  # ended and removed before the next start, so runs do not overlap
                    if i:
                        ran.append(t_file - t0)
                        running.append(t_run - t0)
                    c.delete(f"/api/v1/namespaces/default/pods/{name}")
                    while c.get(f"/api/v1/namespaces/default/pods/{name}").status_code != 404:
                        time.sleep(0.02)  # its teardown done too, not overlapping the next start
                    time.sleep(0.3)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    md = statistics.median(direct)
    print(f"podman run directly, until the command ran:       {md * 1000:7.0f} ms (median of {a.runs})")
    for path, (ran, running) in figures.items():
        print(f"ketch {path:9s} Pod create -> Running:           {statistics.median(running) * 1000:7.0f} ms")
        print(f"ketch {path:9s} Pod create -> the command ran:    {statistics.median(ran) * 1000:7.0f} ms")
    print(f"container path overhead over podman run: {(statistics.median(figures['container'][0]) - md) * 1000:+.0f} ms (target: within 50 ms)")
    print(json.dumps({"podman_run_ms": round(md * 1000), **{f"{p}_ran_ms": round(statistics.median(f[0]) * 1000) for p, f in figures.items()}}))


if __name__ == "__main__":
    main()
