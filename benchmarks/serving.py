"""ketch's model server against KServe's own (``kserve`` from PyPI) on the same machine, in one run.

Both serve the same scikit-learn models (iris LogisticRegression; a 100-tree RandomForest), one process
each pinned to CPU 0, driven by the same closed-loop load generator (benchmarks/loadgen.py) pinned to
CPU 1, at concurrency 1, 8 and 64, over V1 ``:predict`` and V2 ``/infer`` with 1-row payloads. Both keep
their default logging (KServe: access and latency logs; ketch: access log). ketch serves the forest with
adaptive batching (``--max-batch-size 64``), the feature meant for models that dominate the request.
Also printed: cold start, process start to first answer.

    python -m venv /tmp/kserve-venv && /tmp/kserve-venv/bin/pip install kserve==0.21.0 scikit-learn
    python benchmarks/serving.py --kserve-python /tmp/kserve-venv/bin/python [--duration 5] [--gateway] [--quick]

``--gateway`` also serves the LR model as an InferenceService and loads it through ketch's gateway with the
admin bearer token, as any client of a protected InferenceService must.

Targets (issue #6): LR >= 2x KServe's rps at every concurrency with a lower p99; RF at c=64 >= 5x.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
from _server import KetchServer, free_port, ketch_server  # noqa: E402

ROW = [6.8, 2.8, 4.8, 1.4]
BODIES = {"v1": json.dumps({"instances": [ROW]}),
          "v2": json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ROW}]})}


def train(out: Path) -> dict[str, Path]:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    paths = {}
    for name, m in (("lr", LogisticRegression(max_iter=1000)), ("rf", RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=0))):
        d = out / name
        d.mkdir(parents=True)
        joblib.dump(m.fit(x, y), d / "model.joblib")
        paths[name] = d
    return paths


def start(cmd: list[str], port: int, env: dict | None = None) -> tuple[subprocess.Popen, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: os.sched_setaffinity(0, {0}), start_new_session=True)
    body = BODIES["v1"]
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {' '.join(cmd)}")
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/models/m:predict", content=body, headers={"content-type": "application/json"}, timeout=1)
            if r.status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.02)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def load(port: int, proto: str, conc: int, duration: float) -> dict:
    path = "/v1/models/m:predict" if proto == "v1" else "/v2/models/m/infer"
    out = subprocess.run([sys.executable, str(HERE / "loadgen.py"), f"http://127.0.0.1:{port}{path}", "--body", BODIES[proto],
                          "-c", str(conc), "-d", str(duration), "--cpu", "1"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kserve-python", default="/tmp/kserve-venv/bin/python")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--models", default="lr,rf")
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--gateway", action="store_true", help="also measure ketch end to end: an InferenceService through ketch's gateway")
    ap.add_argument("--quick", action="store_true", help="a short run that proves the benchmark works (lr, c=1, 1 s, with --gateway)")
    a = ap.parse_args()
    if a.quick:
        a.models, a.concurrency, a.duration, a.gateway = "lr", "1", 1.0, True
    tmp = Path(tempfile.mkdtemp(prefix="ketch-bench-"))
    paths = train(tmp)
    concs = [int(c) for c in a.concurrency.split(",")]
    results: dict = {}
    cold: dict = {}
    for model in a.models.split(","):
        procs, ports = {}, {}
        for server in ("kserve", "ketch"):  # both up at once; the idle one costs nothing while the other is measured
            port = ports[server] = free_port()
            if server == "kserve":
                cmd = [a.kserve_python, str(HERE / "kserve_sklearn_server.py"), "--model_name", "m", "--model_path",
                       str(paths[model] / "model.joblib"), "--http_port", str(port)]
                env = None
            else:
                cmd = [sys.executable, "-m", "ketch.serving.modelserver", "--model-name", "m", "--model-dir", str(paths[model]), "--http-port", str(port)]
                if model == "rf":
                    cmd += ["--max-batch-size", "64"]
                env = {"PYTHONPATH": str(SRC)}
            procs[server], cold[(model, server)] = start(cmd, port, env)
        try:
            for proto in ("v1", "v2"):
                for c in concs:
                    for server in ("kserve", "ketch"):  # interleaved, so load from elsewhere hits both alike
                        r = load(ports[server], proto, c, a.duration)
                        results[(model, server, proto, c)] = r
                        print(f"  {model} {server:6} {proto} c={c:<3} {r['rps']:8.0f} rps  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  errors {r['errors']}", flush=True)
        finally:
            for p in procs.values():
                stop(p)
    print()
    print(f"{'model':5} {'proto':5} {'conc':>4} | {'KServe rps':>10} {'p50':>7} {'p99':>7} | {'ketch rps':>10} {'p50':>7} {'p99':>7} | {'rps x':>6} {'p99 x':>6}")
    for model in a.models.split(","):
        for proto in ("v1", "v2"):
            for c in concs:
                k, m = results[(model, "kserve", proto, c)], results[(model, "ketch", proto, c)]
                print(f"{model:5} {proto:5} {c:>4} | {k['rps']:10.0f} {k['p50']:7.2f} {k['p99']:7.2f} | {m['rps']:10.0f} {m['p50']:7.2f} {m['p99']:7.2f} |"
                      f" {m['rps'] / k['rps']:6.2f} {k['p99'] / m['p99']:6.2f}")
    print()
    for model in a.models.split(","):
        print(f"cold start (process start to first answer), {model}: KServe {cold[(model, 'kserve')]:.2f} s, ketch {cold[(model, 'ketch')]:.2f} s")
    print("(rps x = ketch rps / KServe rps; p99 x = KServe p99 / ketch p99: above 1 means ketch is better)")
    if a.gateway:
        gateway(paths["lr"], concs, a.duration, tmp)


def serve_isvc(k: KetchServer, model_dir: Path, name: str = "m", timeout: float = 180) -> tuple[str, float]:
    """Create an sklearn InferenceService for ``model_dir`` and wait until Ready: (status.url, seconds taken)."""
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": name, "namespace": "default"},
            "spec": {"predictor": {"sklearn": {"storageUri": str(model_dir)}}}}
    base = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"
    with k.http() as h:
        t0 = time.perf_counter()
        h.post(base, json=isvc).raise_for_status()
        while time.perf_counter() - t0 < timeout:
            st = h.get(f"{base}/{name}").json().get("status") or {}
            if any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])):
                return st["url"], time.perf_counter() - t0
            time.sleep(0.05)
    raise SystemExit(f"InferenceService {name} did not become Ready:\n{k.log()}")


def load_url(url: str, conc: int, duration: float, headers: dict[str, str] | None = None, cpu: int = 1) -> dict:
    """The V1 body against ``url`` (loadgen.py pinned to ``cpu``), with ``headers`` on every request."""
    hs = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    out = subprocess.run([sys.executable, str(HERE / "loadgen.py"), url, "--body", BODIES["v1"], "-c", str(conc), "-d", str(duration),
                          "--cpu", str(cpu), *hs], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def gateway(model_dir: Path, concs: list[int], duration: float, tmp: Path) -> None:
    """The LR model as an InferenceService, V1 through ketch's gateway (status.url): one more proxy hop."""
    with ketch_server(preexec_fn=lambda: os.sched_setaffinity(0, {0})) as k:
        url, ready_s = serve_isvc(k, model_dir)
        print(f"\nInferenceService create to Ready (fetch, start, load): {ready_s:.2f} s; status.url {url}")
        u = httpx.URL(url)
        for c in concs:
            r = load_url(f"{url}/v1/models/m:predict", c, duration, k.headers)
            print(f"  lr via gateway ({u.path}) v1 c={c:<3} {r['rps']:8.0f} rps  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  errors {r['errors']}", flush=True)


if __name__ == "__main__":
    main()
