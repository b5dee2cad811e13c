"""InferenceGraph routing cost: the latency a graph adds per hop, against calling the model directly.

Starts a throwaway ``ketch up``, serves one scikit-learn InferenceService (iris LogisticRegression), and
Sequence graphs of 1, 2 and 4 steps on it (each step gets the request: ``data: $request``). Sequential
requests (c=1, one keep-alive connection) to: the model server's own port, the InferenceService through
the gateway, and each graph. Prints p50/p99 and the derived figures: the gateway's hop, the graph's entry
cost (1-step graph minus the InferenceService), and the cost of each further step.

    python benchmarks/serving_graph.py [--requests 500]
"""

from __future__ import annotations

import argparse
import contextlib
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

SRC = Path(__file__).resolve().parents[1] / "src"
ROW = [6.8, 2.8, 4.8, 1.4]


def token(home: str) -> dict[str, str]:
    p = Path(home) / "tokens.csv"
    if p.exists():
        for line in p.read_text().splitlines():
            parts = line.split(",")
            if len(parts) >= 2 and parts[1] == "admin":
                return {"Authorization": f"Bearer {parts[0]}"}
    return {}


def measure(client: httpx.Client, url: str, n: int) -> list[float]:
    body = json.dumps({"instances": [ROW]}).encode()
    hdr = {"content-type": "application/json"}
    for _ in range(min(50, n)):
        client.post(url, content=body, headers=hdr)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.post(url, content=body, headers=hdr)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, r.text
    return out


def q(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    with tempfile.TemporaryDirectory() as home, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        x, y = load_iris(return_X_y=True)
        (Path(home) / "lr").mkdir()
        joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), Path(home) / "lr" / "model.joblib")
        env = {**os.environ, "KETCH_HOME": home, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        p = subprocess.Popen([sys.executable, "-m", "ketch", "up", "--port", str(port), "--log-level", "warning"], env=env,
                             stdout=open(Path(home) / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(400):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/healthz", timeout=1).status_code in (200, 401):
                        break
                time.sleep(0.05)
            api = httpx.Client(base_url=url, headers=token(home), timeout=60)
            isvcs = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"
            api.post(isvcs, json={"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "lr"},
                                  "spec": {"predictor": {"sklearn": {"storageUri": str(Path(home) / "lr")}}}}).raise_for_status()
            igs = "/apis/serving.kserve.io/v1alpha1/namespaces/default/inferencegraphs"
            for n in (1, 2, 4):
                api.post(igs, json={"apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceGraph", "metadata": {"name": f"seq{n}"},
                                    "spec": {"nodes": {"root": {"routerType": "Sequence",
                                                                "steps": [{"serviceName": "lr", "data": "$request"}] * n}}}}).raise_for_status()
            t0 = time.time()
            while time.time() - t0 < 120:
                objs = [api.get(f"{isvcs}/lr").json()] + [api.get(f"{igs}/seq{n}").json() for n in (1, 2, 4)]
                if all(any(c["type"] == "Ready" and c["status"] == "True" for c in (o.get("status") or {}).get("conditions", [])) for o in objs):
                    break
                time.sleep(0.2)
            else:
                raise SystemExit("not ready in 120 s")
            pod = api.get("/api/v1/namespaces/default/pods", params={"labelSelector": "serving.kserve.io/inferenceservice=lr"}).json()["items"][0]
            direct = f"http://127.0.0.1:{pod['metadata']['annotations']['serving.ketch.io/port']}/v1/models/lr:predict"
            targets = {"model server direct": direct, "isvc via gateway": f"{url}/serving/default/lr/v1/models/lr:predict"}
            targets.update({f"graph Sequence x{n}": f"{url}/serving/default/seq{n}" for n in (1, 2, 4)})
            res = {}
            with httpx.Client(headers=token(home), timeout=30) as c:
                for name, u in targets.items():
                    res[name] = measure(c, u, args.requests)
                    print(f"{name:22s} p50 {statistics.median(res[name]):7.2f} ms  p99 {q(res[name], 0.99):7.2f} ms")
            med = {k: statistics.median(v) for k, v in res.items()}
            print(f"gateway hop (isvc - direct):               {med['isvc via gateway'] - med['model server direct']:6.2f} ms")
            print(f"graph entry (Sequence x1 - isvc):          {med['graph Sequence x1'] - med['isvc via gateway']:6.2f} ms")
            print(f"each further step ((x4 - x1) / 3):         {(med['graph Sequence x4'] - med['graph Sequence x1']) / 3:6.2f} ms")
            print(f"model call itself (direct):                {med['model server direct']:6.2f} ms")
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
