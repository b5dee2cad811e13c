"""The Ray kubelet against the local kubelet, and one Ray node against three, measured in one run.

    python benchmarks/ray_kubelet.py [--chain 10] [--fanout 64] [--skip-fanout] [--skip-chain]

1. **Per-task overhead**: a chain of ``--chain`` trivial KFP components (each one a task Pod, each waiting
   for the one before), submitted with kfp.Client to a ketch on the local kubelet, then to a ketch on the
   Ray kubelet (``KETCH_KUBELET=ray``, a Ray instance ketch starts); wall time from submission to the run's
   end, divided by the tasks (the work is nil: it is all overhead). Each ketch first runs the pipeline once
   to warm up (imports, page cache, the zygotes); the best of ``--repeat`` runs counts. Target: Ray within
   2x of local.
2. **Spread**: a ParallelFor of ``--fanout`` tasks that each sleep 1 s and request 1 CPU, on a
   ``ray.cluster_utils.Cluster`` of 1 node then of 3 nodes, each node given ``num_cpus=2``: one node runs 2
   at a time, three nodes 6, so the fan-out's wall time shows how the Ray kubelet spreads Pods over Nodes.

Prints the figures and the ratios.
"""

import argparse
import collections
import contextlib
import io
import os
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]
# The Ray clusters started here run ketch's node workers: their Python must import this ketch.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p)

from _server import ketch_server  # noqa: E402
from kfp import dsl  # noqa: E402


@dsl.component
def inc(x: int) -> int:
    return x + 1


def chain_of(n: int):  # noqa: ANN201
    @dsl.pipeline(name=f"chain-{n}")
    def chain(x: int = 0) -> int:
        t = inc(x=x)
        for _ in range(n - 1):
            t = inc(x=t.output)
        return t.output

    return chain


@dsl.component
def sleep_one(x: int) -> int:
    import time

    time.sleep(1.0)
    return x


@dsl.component
def total(xs: list) -> int:
    return int(sum(xs))


def fanout_of(n: int):  # noqa: ANN201
    @dsl.pipeline(name=f"fanout-{n}")
    def fanout() -> int:
        with dsl.ParallelFor(list(range(n))) as i:
            s = sleep_one(x=i).set_cpu_request("1")
        return total(xs=dsl.Collected(s.output)).output

    return fanout


def timed_run(client, func) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # kfp prints links to the run
        rid = client.create_run_from_pipeline_func(func, enable_caching=False).run_id
    while (r := client.get_run(rid)).state not in ("SUCCEEDED", "FAILED", "CANCELED"):
        time.sleep(0.05)
    took = time.perf_counter() - t0
    if r.state != "SUCCEEDED":
        raise RuntimeError(f"run {func.name} ended {r.state}: {r.error}")
    return took


def chain_on(env: dict[str, str], n: int, repeat: int) -> float:
    func = chain_of(n)
    with ketch_server(env=env, timeout=120) as k:
        c = k.kfp_client()
        timed_run(c, func)  # warm-up
        return min(timed_run(c, func) for _ in range(repeat))


def fanout_on(nodes: int, n: int) -> tuple[float, collections.Counter]:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    for i in range(nodes - 1):
        cluster.add_node(num_cpus=2, labels={"ketch.dev/node-name": f"worker-{i + 1}"})
    cluster.wait_for_nodes()
    try:
        env = {"KETCH_KUBELET": "ray", "KETCH_RAY_ADDRESS": cluster.address}
        with ketch_server(env=env, timeout=120) as k:
            c = k.kfp_client()
            with k.http() as h:
                deadline = time.monotonic() + 60
                while len(h.get("/api/v1/nodes").json()["items"]) < nodes and time.monotonic() < deadline:
                    time.sleep(0.2)
                took = timed_run(c, fanout_of(n))
                pods = h.get("/api/v1/pods").json()["items"]
            spread = collections.Counter(p["spec"].get("nodeName") for p in pods
                                         if any(c_.get("resources", {}).get("requests", {}).get("cpu") == "1" for c_ in p["spec"]["containers"]))
            return took, spread
    finally:
        cluster.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fanout", type=int, default=64)
    ap.add_argument("--skip-chain", action="store_true")
    ap.add_argument("--skip-fanout", action="store_true")
    a = ap.parse_args()
    if not a.skip_chain:
        local = chain_on({"KETCH_KUBELET": "local"}, a.chain, a.repeat)
        ray = chain_on({"KETCH_KUBELET": "ray", "KETCH_RAY_NUM_CPUS": "2"}, a.chain, a.repeat)
        print(f"chain of {a.chain} trivial tasks (best of {a.repeat}):")
        print(f"  local kubelet {local:6.2f} s  {local / a.chain * 1000:6.0f} ms/task")
        print(f"  Ray kubelet   {ray:6.2f} s  {ray / a.chain * 1000:6.0f} ms/task")
        print(f"  Ray/local per-task overhead: {ray / local:.2f}x (target <= 2x)")
    if not a.skip_fanout:
        one, s1 = fanout_on(1, a.fanout)
        three, s3 = fanout_on(3, a.fanout)
        ideal1, ideal3 = a.fanout / 2, a.fanout / 6
        print(f"fan-out of {a.fanout} tasks of 1 s, 1 CPU each (nodes of num_cpus=2):")
        print(f"  1 Ray node   {one:6.2f} s  (>= {ideal1:.0f} s of sleeping, 2 at a time)  pods per node {dict(s1)}")
        print(f"  3 Ray nodes  {three:6.2f} s  (>= {ideal3:.1f} s, 6 at a time)             pods per node {dict(s3)}")
        print(f"  speed-up 3 nodes vs 1: {one / three:.2f}x (at most 3x)")


if __name__ == "__main__":
    main()
