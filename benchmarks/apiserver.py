"""API server benchmark (run by hand: `python benchmarks/apiserver.py [--quick]`).

Starts a real `ketch up` on a free loopback port with a fresh KETCH_HOME and prints:
objects created per second (1 client, 8 concurrent clients, and their ratio), get and list latency
percentiles, watch event delivery latency, and the wall time of `kubectl apply -f` on a file of 500 objects.
The create phases send from stdlib ``http.client`` keep-alive connections, one per client thread: httpx
costs ~4x the CPU per request, and on a small machine the load generator's CPU is taken from the server's. Requests carry the
admin token (kubectl through the kubeconfig `ketch kubeconfig` writes), as a user's would. Each figure comes with
a reference measured in the same run on the same machine, so ratios stay meaningful across machines:
- the HTTP floor: GET /healthz round trips (what any request costs before ketch does anything);
- the storage floor: bare SQLite WAL commits of one row (what a durable write costs before ketch does anything).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import ketch_server  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt_ms(xs: list[float]) -> str:
    return f"p50 {pct(xs, 50) * 1e3:.2f} ms, p95 {pct(xs, 95) * 1e3:.2f} ms, p99 {pct(xs, 99) * 1e3:.2f} ms"


def sqlite_floor(n: int) -> float:
    """Commits per second of one-row transactions in SQLite WAL, synchronous=NORMAL (ketch's settings)."""
    d = tempfile.mkdtemp()
    try:
        c = sqlite3.connect(os.path.join(d, "f.db"), isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
        blob = json.dumps({"metadata": {"name": "x" * 20}, "data": {"i": "1"}})
        t0 = time.perf_counter()
        for i in range(n):
            c.execute("BEGIN")
            c.execute("INSERT INTO t VALUES (?, ?)", (str(i), blob))
            c.execute("COMMIT")
        return n / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Creator:
    """One client: a keep-alive connection that POSTs objects and checks each answer is 201."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def create(self, path: str, obj: dict) -> None:
        self.conn.request("POST", path, body=json.dumps(obj), headers=self.headers)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 201:
            raise RuntimeError(f"POST {path}: {r.status} {body[:300]!r}")

    def close(self) -> None:
        self.conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="objects per create phase")
    ap.add_argument("--apply-objects", type=int, default=500)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--quick", action="store_true", help="a short run that proves the benchmark works (few objects and samples)")
    args = ap.parse_args()
    samples, reps, n_watch = 1000, 30, 300
    if args.quick:
        args.n, args.apply_objects, samples, reps, n_watch = 80, 20, 100, 5, 30
    out: dict[str, str] = {}
    with ketch_server(args=["--database-url", args.database_url] if args.database_url else []) as k:
        home = k.home
        print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}")
        with k.http(timeout=30) as h:
            floor = []
            for _ in range(samples // 2):
                t0 = time.perf_counter()
                h.get("/healthz")
                floor.append(time.perf_counter() - t0)
            out["HTTP floor (GET /healthz)"] = fmt_ms(floor)
            out["storage floor (SQLite WAL 1-row commits)"] = f"{sqlite_floor(2000):.0f}/s"
            for ns in ("b1", "b8", "bl", "bw"):
                h.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()

            def body(name: str) -> dict:
                return {"metadata": {"name": name, "labels": {"app": "bench", "i": name[-1]}}, "data": {"k": "v" * 64}}

            one = Creator(k.port, k.token)
            t0 = time.perf_counter()
            for i in range(args.n):
                one.create("/api/v1/namespaces/b1/configmaps", body(f"c{i}"))
            single = args.n / (time.perf_counter() - t0)
            one.close()
            out["creates/s, 1 client"] = f"{single:.0f}/s"

        clients = [Creator(k.port, k.token) for _ in range(8)]
        start = threading.Barrier(9)

        def worker(w: int) -> None:
            start.wait()
            for i in range(args.n // 8):
                clients[w].create("/api/v1/namespaces/b8/configmaps", body(f"w{w}-{i}"))

        server, me = psutil.Process(k.proc.pid), psutil.Process()
        with ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(worker, w) for w in range(8)]
            cpu0, mine0 = sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2])
            start.wait()
            t0 = time.perf_counter()
            for f in futs:
                f.result()
            conc = (args.n // 8 * 8) / (time.perf_counter() - t0)
            cpu, mine = sum(server.cpu_times()[:2]) - cpu0, sum(me.cpu_times()[:2]) - mine0
        for c in clients:
            c.close()
        out["creates/s, 8 concurrent clients"] = f"{conc:.0f}/s"
        # CPU seconds per create, the server's and this load generator's: steadier than a rate on a loaded
        # machine, and what decides the rate where the two share the cores
        out["CPU per create, 8 clients: server / load generator"] = f"{cpu / (args.n // 8 * 8) * 1e6:.0f} / {mine / (args.n // 8 * 8) * 1e6:.0f} us"
        out["ratio: 8-client creates/s vs 1 client"] = f"{conc / single:.2f}"

        with k.http(timeout=30) as h:
            gets = []
            for i in range(samples):
                t0 = time.perf_counter()
                h.get(f"/api/v1/namespaces/b1/configmaps/c{i % args.n}").raise_for_status()
                gets.append(time.perf_counter() - t0)
            out["get latency"] = fmt_ms(gets)
            lists = []
            for _ in range(reps):
                t0 = time.perf_counter()
                r = h.get("/api/v1/namespaces/b1/configmaps")
                r.raise_for_status()
                lists.append(time.perf_counter() - t0)
            out[f"list latency ({len(r.json()['items'])} objects)"] = fmt_ms(lists)
            sel = []
            for _ in range(reps):
                t0 = time.perf_counter()
                h.get("/api/v1/namespaces/b1/configmaps", params={"labelSelector": "i=7"}).raise_for_status()
                sel.append(time.perf_counter() - t0)
            out["list latency, labelSelector matching 10%"] = fmt_ms(sel)
            tables = []
            for _ in range(reps):
                t0 = time.perf_counter()
                h.get("/api/v1/namespaces/b1/configmaps", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).raise_for_status()
                tables.append(time.perf_counter() - t0)
            out["list as Table (kubectl get)"] = fmt_ms(tables)

        # Watch delivery: time from just before a create is sent to the event's arrival on an open watch.
        sent: dict[str, float] = {}
        lat: list[float] = []
        ready = threading.Event()

        def watcher() -> None:
            with k.http(timeout=None) as hw, hw.stream("GET", "/api/v1/namespaces/bw/configmaps", params={"watch": "true", "resourceVersion": "0"}) as r:
                ready.set()
                for line in r.iter_lines():
                    if not line.strip():
                        continue
                    e = json.loads(line)
                    name = e["object"]["metadata"]["name"]
                    if name in sent:
                        lat.append(time.perf_counter() - sent[name])
                    if len(lat) >= n_watch:
                        return

        t = threading.Thread(target=watcher, daemon=True)
        t.start()
        ready.wait(10)
        time.sleep(0.2)
        with k.http(timeout=30) as h:
            for i in range(n_watch):
                name = f"e{i}"
                sent[name] = time.perf_counter()
                h.post("/api/v1/namespaces/bw/configmaps", json=body(name)).raise_for_status()
        t.join(30)
        out["watch delivery latency (create sent -> event received)"] = fmt_ms(lat)

        kubectl = shutil.which("kubectl")
        if kubectl:
            kc = k.kubeconfig()  # https on the same port, with the admin token and ketch's CA
            docs = "\n---\n".join(
                json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"a{i}", "namespace": "bl"}, "data": {"i": str(i)}})
                for i in range(args.apply_objects)
            )
            f = home / "objects.yaml"
            f.write_text(docs)
            base = [kubectl, "--kubeconfig", str(kc), "--cache-dir", str(home / "kcache")]
            subprocess.run([*base, "get", "ns"], check=True, capture_output=True)  # warm the discovery cache
            for label, extra in (("create", []), ("unchanged", []), ("server-side", ["--server-side"])):
                t0 = time.perf_counter()
                subprocess.run([*base, "apply", *extra, "-f", str(f)], check=True, capture_output=True)
                out[f"kubectl apply -f ({args.apply_objects} objects, {label})"] = f"{time.perf_counter() - t0:.2f} s"
            t0 = time.perf_counter()
            subprocess.run([*base, "get", "cm", "-n", "bl"], check=True, capture_output=True)
            out[f"kubectl get cm ({args.apply_objects} objects)"] = f"{time.perf_counter() - t0:.2f} s"
        out["ratio: 1-client creates/s vs SQLite floor"] = f"{single / float(out['storage floor (SQLite WAL 1-row commits)'][:-2]):.2f}"
        out["ratio: get p50 vs HTTP floor p50"] = f"{pct(gets, 50) / pct(floor, 50):.2f}"
    width = max(map(len, out))
    for name, v in out.items():
        print(f"{name:<{width}}  {v}")


if __name__ == "__main__":
    main()
