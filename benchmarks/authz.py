"""Cost of RBAC authorization (run by hand: `python benchmarks/authz.py [--bindings 1000] [-n 1500]`).

Starts a real `ketch up`, creates N RoleBindings (spread over 100 namespaces, subjects all distinct) plus
one user ``bench`` with ``kubeflow-edit`` in namespace ``bench``, and measures, interleaved in one run so
the machine's noise hits both sides alike:
- API get of one ConfigMap and list of 50 ConfigMaps in ``bench``;
- KFP list of experiments in ``bench`` (``/apis/v2beta1/experiments?namespace=bench``);
each as the admin (``system:masters``: the authorizer answers without looking at RBAC, the "no RBAC" side)
and as ``bench`` (RBAC evaluated against every binding in the store). Prints p50/p90 of each and the
overhead (target: under 10%). Then the authorizer alone, in process: one decision, and one rebuild of the
index after an RBAC write.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def timed(h: httpx.Client, path: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = h.get(path)
        out.append((time.perf_counter() - t) * 1e3)
        if r.status_code != 200:
            raise SystemExit(f"{path}: {r.status_code} {r.text[:300]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindings", type=int, default=1000)
    ap.add_argument("-n", type=int, default=1500, help="requests per measurement and identity")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix="ketch-authz-"))
    env = {**os.environ, "KETCH_HOME": str(home), "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "ketch", "up", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        admin = next(line.split(",")[0] for line in (home / "tokens.csv").read_text().splitlines() if ",admin," in line)
        kc = home / "bench.kubeconfig"
        subprocess.run([sys.executable, "-m", "ketch", "user", "add", "bench", "--server", url, "--kubeconfig", str(kc)],
                       env=env, check=True, capture_output=True)
        user = yaml.safe_load(kc.read_text())["users"][0]["user"]["token"]
        A = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        U = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {user}"}, timeout=30)
        rb = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"
        for i in range(100):
            A.post("/api/v1/namespaces", json={"metadata": {"name": f"team-{i}"}})
        A.post("/api/v1/namespaces", json={"metadata": {"name": "bench"}})

        def bind(i: int) -> None:
            ns = f"team-{i % 100}"
            r = A.post(rb.format(ns=ns), json={"metadata": {"name": f"rb-{i}"}, "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-edit" if i % 2 else "kubeflow-view"},
                "subjects": [{"kind": "User", "name": f"user-{i}", "apiGroup": "rbac.authorization.k8s.io"},
                             {"kind": "Group", "name": f"group-{i % 37}", "apiGroup": "rbac.authorization.k8s.io"}]})
            assert r.status_code == 201, r.text

        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(bind, range(args.bindings)))
        print(f"created {args.bindings} RoleBindings in {time.perf_counter() - t0:.1f}s")
        A.post(rb.format(ns="bench"), json={"metadata": {"name": "bench-edit"}, "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-edit"},
            "subjects": [{"kind": "User", "name": "bench", "apiGroup": "rbac.authorization.k8s.io"}]})
        for i in range(50):
            A.post("/api/v1/namespaces/bench/configmaps", json={"metadata": {"name": f"cm-{i}"}, "data": {"k": "v" * 100}})
        for i in range(20):
            A.post("/apis/v2beta1/experiments", json={"display_name": f"exp-{i}", "namespace": "bench"})
        paths = {"API get": "/api/v1/namespaces/bench/configmaps/cm-7", "API list (50)": "/api/v1/namespaces/bench/configmaps",
                 "KFP list experiments": "/apis/v2beta1/experiments?namespace=bench&page_size=50"}
        print(f"{'request':24} {'admin p50':>10} {'user p50':>10} {'overhead':>9} {'admin p90':>10} {'user p90':>10}")
        for what, path in paths.items():
            timed(A, path, 50)
            timed(U, path, 50)
            a: list[float] = []
            u: list[float] = []
            for _ in range(10):  # interleaved rounds
                a += timed(A, path, args.n // 10)
                u += timed(U, path, args.n // 10)
            oh = (pct(u, 0.5) / pct(a, 0.5) - 1) * 100
            print(f"{what:24} {pct(a, .5):9.3f}ms {pct(u, .5):9.3f}ms {oh:8.1f}% {pct(a, .9):9.3f}ms {pct(u, .9):9.3f}ms")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    in_process(args.bindings)


def in_process(n: int) -> None:
    """The authorizer alone over a store holding ``n`` RoleBindings."""
    from ketch.machinery.api import Api
    from ketch.machinery.authn import UserInfo
    from ketch.machinery.authz import Authorizer
    from ketch.machinery.rbac_defaults import ensure
    from ketch.machinery.requestinfo import from_request
    from ketch.store import open_store

    with tempfile.TemporaryDirectory() as d:
        api = Api(open_store(str(Path(d) / "k.db")))
        ensure(api)
        rd = api.rd("rbac.authorization.k8s.io/v1", "RoleBinding")
        nsrd = api.rd("v1", "Namespace")
        for i in range(100):
            api.create(nsrd, "", {"metadata": {"name": f"team-{i}"}})
        for i in range(n):
            api.create(rd, f"team-{i % 100}", {"metadata": {"name": f"rb-{i}"}, "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "kubeflow-edit"},
                "subjects": [{"kind": "User", "name": f"user-{i}"}]})
        az = Authorizer(api.store)
        u = UserInfo("user-7", "", ("system:authenticated",))
        attrs = from_request("GET", "/api/v1/namespaces/team-7/configmaps/x")
        assert az.authorize(u, attrs)
        t = time.perf_counter()
        for _ in range(20000):
            az.authorize(u, attrs)
        per = (time.perf_counter() - t) / 20000 * 1e6
        t = time.perf_counter()
        az._policy = None
        az.authorize(u, attrs)
        rebuild = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        for _ in range(20000):
            from_request("GET", "/api/v1/namespaces/team-7/configmaps/x")
        parse = (time.perf_counter() - t) / 20000 * 1e6
        print(f"in process, {n} RoleBindings: decision {per:.2f} us, path parse {parse:.2f} us, index rebuild after an RBAC write {rebuild:.1f} ms")


if __name__ == "__main__":
    main()
