"""What payload logging costs a model server's throughput (issue #18's target: under 5 % at c=64).

One iris LogisticRegression model server pinned to CPU 0, the load generator (benchmarks/loadgen.py) on
CPU 1, V1 ``:predict`` with 1-row bodies at concurrency 64, for each logger setting in turn, interleaved
over ``--rounds`` rounds (so load from elsewhere hits all alike):

- ``off``: no logger;
- ``store``: ``--logger-mode all`` to ketch's built-in payload store (every request and response);
- ``http``: to an HTTP sink (a small uvicorn app, unpinned), one POST per event;
- ``http-batch``: the same sink, CloudEvents batches of 64.

Prints rps, p50, p99 and each setting's rps against ``off``, plus the events the sink received and the
drops the model server counted (a sink that cannot keep up drops rather than slowing inference).

    python benchmarks/serving_logger.py [--duration 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
BODY = json.dumps({"instances": [[6.8, 2.8, 4.8, 1.4]]})

SINK = textwrap.dedent('''
    import sys
    n = [0]
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            m = await receive()
            body += m.get("body", b"")
            more = m.get("more_body", False)
        if scope["method"] == "GET":
            out = str(n[0]).encode()
        else:
            ctype = dict(scope["headers"]).get(b"content-type", b"")
            n[0] += body.count(b'"specversion"') if b"batch" in ctype else 1
            out = b""
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})
    if __name__ == "__main__":
        import uvicorn
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(url: str, proc: subprocess.Popen) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"exited: {proc.args}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"not up: {url}")


def stop(p: subprocess.Popen) -> None:
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=64)
    a = ap.parse_args()
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    tmp = Path(tempfile.mkdtemp(prefix="ketch-logger-bench-"))
    x, y = load_iris(return_X_y=True)
    (tmp / "m").mkdir()
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), tmp / "m" / "model.joblib")
    (tmp / "sink.py").write_text(SINK)
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, str(tmp / "sink.py"), str(sink_port)], start_new_session=True)
    wait(f"http://127.0.0.1:{sink_port}/", sink)
    sink_url = f"http://127.0.0.1:{sink_port}/events"
    settings = {"off": [], "store": ["--logger-url", f"payloads://{tmp / 'store'}"],
                "http": ["--logger-url", sink_url], "http-batch": ["--logger-url", sink_url, "--logger-batch-size", "64", "--logger-batch-interval", "0.05"]}
    results: dict[str, list[dict]] = {k: [] for k in settings}
    drops: dict[str, float] = {k: 0.0 for k in settings}
    try:
        for rnd in range(a.rounds):
            for name, extra in settings.items():
                port = free_port()
                cmd = [sys.executable, "-m", "ketch.serving.modelserver", "--model-name", "m", "--model-dir", str(tmp / "m"), "--http-port", str(port),
                       "--no-access-log", *extra]
                env = {**os.environ, "PYTHONPATH": str(SRC), "KETCH_PAYLOAD_MAX_BYTES": str(256 << 20)}
                p = subprocess.Popen(cmd, env=env, preexec_fn=lambda: os.sched_setaffinity(0, {0}), start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait(f"http://127.0.0.1:{port}/v2/health/ready", p)
                    out = subprocess.run([sys.executable, str(HERE / "loadgen.py"), f"http://127.0.0.1:{port}/v1/models/m:predict", "--body", BODY,
                                          "-c", str(a.concurrency), "-d", str(a.duration), "--cpu", "1"], capture_output=True, text=True, check=True)
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    results[name].append(r)
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                    drops[name] += sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith("kserve_logger_events_dropped_total"))
                    print(f"  round {rnd + 1} {name:10} {r['rps']:8.0f} rps  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  errors {r['errors']}", flush=True)
                finally:
                    stop(p)
        received = int(httpx.get(f"http://127.0.0.1:{sink_port}/").text)
    finally:
        stop(sink)
    base = statistics.median(r["rps"] for r in results["off"])
    print(f"\nc={a.concurrency}, V1, 1-row bodies; median of {a.rounds} rounds of {a.duration:g} s")
    print(f"{'logger':10} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs off':>8} {'dropped':>8}")
    for name in settings:
        rps = statistics.median(r["rps"] for r in results[name])
        p50 = statistics.median(r["p50"] for r in results[name])
        p99 = statistics.median(r["p99"] for r in results[name])
        print(f"{name:10} {rps:8.0f} {p50:8.2f} {p99:8.2f} {100 * (rps / base - 1):+7.1f}% {drops[name]:8.0f}")
    print(f"events received by the HTTP sink: {received}")


if __name__ == "__main__":
    main()
