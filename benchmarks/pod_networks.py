"""What a network namespace per Pod costs per Pod start: the same Pods on the host network and with
``KETCH_POD_NETWORK=netns``, measured in one run (root only; the netns mode needs it).

Run by hand:  sudo python benchmarks/pod_networks.py [--repeat 20] [--quick]

For each mode, a real ``ketch up`` (temporary KETCH_HOME): the latency from Pod create to phase Running and
to Succeeded of ``true`` Pods one after another (a namespace made and torn down for each), then N Pods at
once. Prints the medians of both modes and the per-Pod difference: what the namespace, its veth and
address, the hosts file and the entry into it add.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import ketch_server  # noqa: E402
from pods import Watcher, pod  # noqa: E402


def measure(mode: str, repeat: int, n: int) -> tuple[float, float, float]:
    with ketch_server(env={"KETCH_POD_NETWORK": mode}) as k, k.http() as c:
        c.post("/api/v1/namespaces", json={"metadata": {"name": "bench"}})
        w = Watcher(k, "bench")
        w.start()
        w.ready.wait(10)
        time.sleep(0.2)
        run_l, done_l = [], []
        for i in range(repeat + 1):
            name = f"lat-{i}"
            t0 = time.perf_counter()
            c.post("/api/v1/namespaces/bench/pods", json=pod(name, ["true"])).raise_for_status()
            w.wait([name], 60)
            assert w.phase[name] == "Succeeded", w.phase[name]
            if i:  # the first Pod also pays for the bridge and the supervisor's start
                run_l.append(w.running[name] - t0)
                done_l.append(w.finished[name] - t0)
        names = [f"tp-{i}" for i in range(n)]
        t0 = time.perf_counter()
        for name in names:
            c.post("/api/v1/namespaces/bench/pods", json=pod(name, ["true"])).raise_for_status()
        w.wait(names, 600)
        total = time.perf_counter() - t0
        assert all(w.phase[x] == "Succeeded" for x in names)
        return statistics.median(run_l), statistics.median(done_l), total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20, help="Pods one after another, per mode")
    ap.add_argument("--n", type=int, default=50, help="Pods created at once, per mode")
    ap.add_argument("--quick", action="store_true", help="a short run that proves the benchmark works")
    a = ap.parse_args()
    if a.quick:
        a.repeat, a.n = 3, 5
    res = {m: measure(m, a.repeat, a.n) for m in ("host", "netns")}
    print(f"{'mode':<7} {'->Running':>10} {'->Succeeded':>12} {a.n:>4} at once")
    for m, (r, d, t) in res.items():
        print(f"{m:<7} {r*1000:9.1f}ms {d*1000:11.1f}ms {t:8.2f}s ({a.n/t:.1f} pods/s)")
    (hr, hd, ht), (nr, nd, nt) = res["host"], res["netns"]
    print(f"netns adds {(nr-hr)*1000:+.1f} ms to Running and {(nd-hd)*1000:+.1f} ms to Succeeded per Pod "
          f"({nd/hd:.2f}x); {a.n} at once: {nt/ht:.2f}x the host network's time")


if __name__ == "__main__":
    main()
