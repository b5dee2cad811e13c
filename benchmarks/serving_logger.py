"""What payload logging costs a model server's throughput (issue #18's target: under 5 % at c=64).

One iris LogisticRegression model server pinned to CPU 0; the load generator (benchmarks/loadgen.py) and
the HTTP sink pinned to CPU 1, apart from the model server (on a 2-core machine they share that core), so
what is measured is the logger's cost in the model server, not the sink's. V1 ``:predict`` with 1-row
bodies at concurrency 64, for each logger setting in turn, interleaved over ``--rounds`` rounds (so load
from elsewhere hits all alike):

- ``off``: no logger;
- ``store``: ``--logger-mode all`` to ketch's built-in payload store (every request and response);
- ``http``: to an HTTP sink, one POST per event (KServe's binary mode);
- ``http-batch``: the same sink, CloudEvents batches of 64;
- ``http-agent``: as ``http``, delivered by the logger's agent process (``--logger-agent``,
  serving/modelserver/logagent.py), pinned to CPU 1 here as KServe's agent container has a CPU of its own;
  its CPU time per request is printed beside the model server's.

The sink is as cheap as one can be (raw asyncio on uvloop: reads each body, counts events, answers 200),
so it keeps up and what is dropped is the logger's doing. Prints each round, then per setting the median
rps, p50, p99, the cost against ``off`` (median of the rounds' costs, each against that round's ``off``,
with the range), and the events delivered to the sink and dropped by the model server.

    python benchmarks/serving_logger.py [--duration 5] [--rounds 3] [--profile http]

``--profile SETTING`` instead runs that setting once under pyinstrument (installed separately:
``pip install pyinstrument``, or on ``PYTHONPATH``) and prints where the model server's time goes.
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
import psutil

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
BODY = json.dumps({"instances": [[6.8, 2.8, 4.8, 1.4]]})

SINK = textwrap.dedent('''
    """A sink that costs as little as a sink can: raw asyncio on uvloop, HTTP/1.1 keep-alive (pipelining
    too), reads each body by its content-length, counts events and answers 200. GET answers the count."""
    import asyncio, os, sys
    n = [0]
    OK = b"HTTP/1.1 200 OK\\r\\ncontent-length: 0\\r\\n\\r\\n"

    class Sink(asyncio.Protocol):
        def connection_made(self, t):
            self.t, self.buf = t, bytearray()

        def data_received(self, data):
            buf = self.buf
            buf += data
            out = []
            while True:
                end = buf.find(b"\\r\\n\\r\\n")
                if end < 0:
                    break
                head = bytes(buf[:end]).lower()
                i = head.find(b"content-length:")
                size = int(head[i + 15:head.find(b"\\r\\n", i) if head.find(b"\\r\\n", i) > 0 else None]) if i >= 0 else 0
                if len(buf) < end + 4 + size:
                    break
                if head.startswith(b"get"):
                    c = str(n[0]).encode()
                    out.append(b"HTTP/1.1 200 OK\\r\\ncontent-length: %d\\r\\n\\r\\n%s" % (len(c), c))
                else:
                    body = bytes(buf[end + 4:end + 4 + size])
                    n[0] += body.count(b'"specversion"') if b"cloudevents-batch" in head else 1
                    out.append(OK)
                del buf[:end + 4 + size]
            if out:
                self.t.write(b"".join(out))

    async def main(port):
        srv = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port, backlog=1024)
        await srv.serve_forever()

    if __name__ == "__main__":
        if len(sys.argv) > 2:
            os.sched_setaffinity(0, {int(sys.argv[2])})
        try:
            import uvloop
            uvloop.install()
        except ImportError:
            pass
        asyncio.run(main(int(sys.argv[1])))
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


def sink_count(port: int) -> int:
    return int(httpx.get(f"http://127.0.0.1:{port}/").text)


def served(port: int) -> float:
    return counters(httpx.get(f"http://127.0.0.1:{port}/metrics").text, "ketch_model_requests_total")


def counters(text: str, name: str) -> float:
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--settings", default=None, help="comma-separated settings to run (default: all; off always runs)")
    ap.add_argument("--profile", default=None, help="run this setting once under pyinstrument and print the profile")
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
    sink = subprocess.Popen([sys.executable, str(tmp / "sink.py"), str(sink_port), "1"], start_new_session=True)
    wait(f"http://127.0.0.1:{sink_port}/", sink)
    sink_url = f"http://127.0.0.1:{sink_port}/events"
    settings = {"off": [], "store": ["--logger-url", f"payloads://{tmp / 'store'}"],
                "http": ["--logger-url", sink_url], "http-batch": ["--logger-url", sink_url, "--logger-batch-size", "64", "--logger-batch-interval", "0.05"],
                "http-agent": ["--logger-url", sink_url, "--logger-agent"]}
    if a.settings:
        settings = {k: v for k, v in settings.items() if k == "off" or k in a.settings.split(",")}
    if a.profile:
        settings = {a.profile: settings[a.profile]}
    results: dict[str, list[dict]] = {k: [] for k in settings}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), "KETCH_PAYLOAD_MAX_BYTES": str(256 << 20)}
    try:
        for rnd in range(1 if a.profile else a.rounds):
            for name, extra in settings.items():
                port = free_port()
                pre = [sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(tmp / "profile.txt"), "-m"] if a.profile else [sys.executable, "-m"]
                cmd = [*pre, "ketch.serving.modelserver", "--model-name", "m", "--model-dir", str(tmp / "m"), "--http-port", str(port),
                       "--no-access-log", *extra]
                p = subprocess.Popen(cmd, env=env, preexec_fn=lambda: os.sched_setaffinity(0, {0}), start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait(f"http://127.0.0.1:{port}/v2/health/ready", p)
                    before = sink_count(sink_port)
                    proc = psutil.Process(p.pid)
                    agents = proc.children()  # the HTTP sinks' delivery agent: a core of its own, as KServe's agent container
                    for ag in agents:
                        ag.cpu_affinity([1])
                    cpu0, req0 = sum(proc.cpu_times()[:2]), served(port)
                    acpu0 = sum(sum(ag.cpu_times()[:2]) for ag in agents)
                    out = subprocess.run([sys.executable, str(HERE / "loadgen.py"), f"http://127.0.0.1:{port}/v1/models/m:predict", "--body", BODY,
                                          "-c", str(a.concurrency), "-d", str(a.duration), "--cpu", "1"], capture_output=True, text=True, check=True)
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    time.sleep(0.5)  # the last batch (batchInterval 50 ms) and the pipelined POSTs' answers
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                    nreq = max(1.0, counters(text, "ketch_model_requests_total") - req0)
                    r["cpu_us"] = 1e6 * (sum(proc.cpu_times()[:2]) - cpu0) / nreq
                    r["agent_us"] = 1e6 * (sum(sum(ag.cpu_times()[:2]) for ag in agents) - acpu0) / nreq
                    r["dropped"] = counters(text, "kserve_logger_events_dropped_total")
                    r["failed"] = counters(text, "kserve_logger_events_failed_total")
                    r["delivered"] = sink_count(sink_port) - before
                    results[name].append(r)
                    print(f"  round {rnd + 1} {name:10} {r['rps']:8.0f} rps  p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  errors {r['errors']}"
                          f"  cpu {r['cpu_us']:6.1f} (+agent {r['agent_us']:5.1f}) us/req  delivered {r['delivered']:7.0f}  dropped {r['dropped']:7.0f}  failed {r['failed']:5.0f}", flush=True)
                finally:
                    if a.profile:  # pyinstrument writes its report when the server exits on SIGINT
                        os.kill(p.pid, signal.SIGINT)
                        p.wait(60)
                    else:
                        stop(p)
    finally:
        stop(sink)
    if a.profile:
        print((tmp / "profile.txt").read_text() if (tmp / "profile.txt").exists() else "no profile written (is pyinstrument importable?)")
        return
    print(f"\nc={a.concurrency}, V1, 1-row bodies; {a.rounds} rounds of {a.duration:g} s (median, and the range over rounds)")
    print(f"{'logger':10} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} {'cost':>8} {'range':>16} {'cpu us/req':>10} {'cpu cost':>9} {'range':>16} {'agent us':>8}"
          f" {'delivered':>10} {'dropped':>8}")
    for name in settings:
        rs = results[name]
        costs = [100 * (1 - r["rps"] / off["rps"]) for r, off in zip(rs, results["off"], strict=True)]
        cpu = [100 * (r["cpu_us"] / off["cpu_us"] - 1) for r, off in zip(rs, results["off"], strict=True)]
        print(f"{name:10} {statistics.median(r['rps'] for r in rs):8.0f} {statistics.median(r['p50'] for r in rs):8.2f} "
              f"{statistics.median(r['p99'] for r in rs):8.2f} {statistics.median(costs):+7.1f}% {f'{min(costs):+.1f}..{max(costs):+.1f}%':>16} "
              f"{statistics.median(r['cpu_us'] for r in rs):10.1f} {statistics.median(cpu):+8.1f}% {f'{min(cpu):+.1f}..{max(cpu):+.1f}%':>16} "
              f"{statistics.median(r['agent_us'] for r in rs):8.1f} "
              f"{sum(r['delivered'] for r in rs):10.0f} {sum(r['dropped'] for r in rs):8.0f}")
    print("cost: throughput lost against off (positive: slower); cpu: the model server's CPU time per request answered (logger work\n"
          "included), less disturbed by other load on the machine than rps; delivered and dropped: events, all rounds together")


if __name__ == "__main__":
    main()
