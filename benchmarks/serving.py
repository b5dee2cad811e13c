"""ketch's model server against KServe's own (``kserve`` from PyPI) on the same machine, in one run.

Both serve the same scikit-learn models (iris LogisticRegression; a 100-tree RandomForest), one process
each pinned to CPU 0, driven by the same closed-loop load generator (benchmarks/loadgen.py) pinned to
CPU 1, at concurrency 1, 8 and 64, over V1 ``:predict`` and V2 ``/infer`` with 1-row payloads. Both keep
their default logging (KServe: access and latency logs; ketch: access log). ketch serves the forest with
adaptive batching (``--max-batch-size 64``), the feature meant for models that dominate the request.
Also printed: cold start, process start to first answer.

    python -m venv /tmp/kserve-venv && /tmp/kserve-venv/bin/pip install kserve==0.21.0 scikit-learn
    python benchmarks/serving.py --kserve-python /tmp/kserve-venv/bin/python [--duration 5]

Targets (issue #6): LR >= 2x KServe's rps at every concurrency with a lower p99; RF at c=64 >= 5x.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
ROW = [6.8, 2.8, 4.8, 1.4]
BODIES = {"v1": json.dumps({"instances": [ROW]}),
          "v2": json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ROW}]})}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    a = ap.parse_args()
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


if __name__ == "__main__":
    main()
