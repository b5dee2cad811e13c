"""Two `ketch up` processes serving one cluster from one PostgreSQL database (docs/apiserver.md, "Several
ketch processes on one database").

Both are real subprocesses on one machine, on different ports, sharing the database and the KETCH_HOME (its
keys and tokens, so a token works on either; its pod state, so the kubelet that takes over adopts the Pods
the other started). The first to start holds the Lease and runs the controllers and the kubelet; the other
serves the API only. Checked: a watch on either sees writes made through the other, live; the follower's
in-process caches (RBAC, served CRD kinds) follow writes made through the leader; the leader's controllers
act on objects created through the follower; exactly one holds the Lease; and when the leader is kill -9'd
in the middle of a pipeline (submitted through the follower with the real kfp SDK) the follower takes the
Lease, adopts the running task and finishes the run, each task run exactly once.
"""

# (no `from __future__ import annotations`: kfp reads the components' annotations as types)

import json
import queue
import re
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from kfp import dsl

from conftest import Ketch, free_port, wait_for
from postgres_helpers import postgres_server
from test_pods_exit_codes import ketch_processes

warnings.filterwarnings("ignore", category=FutureWarning)

# Quick failover for the test: a candidate takes over 3 s after the leader's last renewal.
ELECTION = {"KETCH_LEADER_ELECT_LEASE_DURATION": "3", "KETCH_LEADER_ELECT_RENEW_DEADLINE": "2", "KETCH_LEADER_ELECT_RETRY_PERIOD": "0.5"}
LEASE = ("lease", "ketch-controller-manager", "-n", "kube-system")


@dataclass
class Peer(Ketch):
    """One of several ketch processes on one home: each with its own log and kubeconfig."""

    tag: str = "a"

    @property
    def kubeconfig(self) -> Path:
        return self.home / f"kubeconfig-{self.tag}"

    @property
    def log_path(self) -> Path:
        return self.home / f"server-{self.tag}.log"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Peer, Peer]]:
    with postgres_server(tmp_path_factory.mktemp("pg")) as url:
        home = tmp_path_factory.mktemp("shared") / "ketch-home"
        home.mkdir()
        a, b = (Peer(home=home, port=free_port(), tag=t, env=ELECTION, extra_args=["--database-url", url]) for t in ("a", "b"))
        try:
            a.start(timeout=60)  # first: it creates the schema and takes the Lease
            b.start(timeout=60)
            yield a, b
        finally:
            b.stop()
            a.stop()


def holder(k: Ketch) -> str:
    return (k.kjson("get", *LEASE).get("spec") or {}).get("holderIdentity") or ""


def metric(k: Ketch, name: str) -> dict[str, float]:
    with k.http() as h:
        text = h.get("/metrics").text
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)}


class Watch:
    """A live HTTP watch on one server, read on a thread into a queue of (type, name)."""

    def __init__(self, k: Ketch, path: str) -> None:
        self.events: queue.Queue = queue.Queue()
        self._client = k.http(timeout=httpx.Timeout(30, read=None))
        self._ready = threading.Event()
        self._t = threading.Thread(target=self._read, args=(path,), daemon=True)
        self._t.start()
        assert self._ready.wait(10), "the watch did not start"

    def _read(self, path: str) -> None:
        try:
            with self._client.stream("GET", path, params={"watch": "true", "timeoutSeconds": "60"}) as r:
                self._ready.set()
                for line in r.iter_lines():
                    if line.strip():
                        e = json.loads(line)
                        self.events.put((e["type"], e["object"]["metadata"]["name"]))
        except httpx.HTTPError:
            pass  # closed by the test

    def expect(self, typ: str, name: str, timeout: float = 10.0) -> None:
        deadline = time.time() + timeout
        seen = []
        while time.time() < deadline:
            try:
                ev = self.events.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                break
            if ev == (typ, name):
                return
            seen.append(ev)
        raise AssertionError(f"no {typ} {name} within {timeout}s; saw {seen}")

    def close(self) -> None:
        self._client.close()


def test_writes_through_either_are_seen_by_watches_and_caches_on_both(cluster):
    a, b = cluster
    a.kubectl("create", "namespace", "mk")
    wait_for(lambda: b.kubectl("get", "namespace", "mk", check=False).returncode == 0, timeout=10, what="the namespace on b")
    on_b, on_a = Watch(b, "/api/v1/namespaces/mk/configmaps"), Watch(a, "/api/v1/namespaces/mk/configmaps")
    try:
        on_b.expect("ADDED", "kube-root-ca.crt")  # the initial list: the stream is live from here on
        on_a.expect("ADDED", "kube-root-ca.crt")
        a.kubectl("create", "configmap", "from-a", "-n", "mk", "--from-literal=x=1")
        on_b.expect("ADDED", "from-a")
        b.kubectl("create", "configmap", "from-b", "-n", "mk")
        on_a.expect("ADDED", "from-b")
        on_b.expect("ADDED", "from-b")  # its own write, once
        a.kubectl("patch", "configmap", "from-b", "-n", "mk", "-p", '{"data":{"y":"2"}}')
        on_b.expect("MODIFIED", "from-b")
        b.kubectl("delete", "configmap", "from-a", "-n", "mk")
        on_a.expect("DELETED", "from-a")
        on_b.expect("DELETED", "from-a")
        time.sleep(1.5)  # past each listener's periodic read of the log: no event of these is published twice
        again = [ev for w in (on_a, on_b) for ev in list(w.events.queue) if ev[1] in ("from-a", "from-b")]
        assert not again, again
    finally:
        on_a.close()
        on_b.close()
    # One resourceVersion sequence: both lists agree, and a write through either moves it for both.
    with a.http() as ha, b.http() as hb:
        rv_a = int(ha.get("/api/v1/namespaces/mk/configmaps").json()["metadata"]["resourceVersion"])
        made = hb.post("/api/v1/namespaces/mk/configmaps", json={"metadata": {"name": "rv"}}).json()
        assert int(made["metadata"]["resourceVersion"]) > rv_a
        assert ha.get("/api/v1/namespaces/mk/configmaps/rv").json()["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]

    # The follower's RBAC cache follows a RoleBinding made through the leader.
    imp = {"Impersonate-User": "carol"}
    with b.http() as hb:
        assert hb.get("/api/v1/namespaces/mk/configmaps", headers=imp).status_code == 403
        a.kubectl("create", "rolebinding", "carol-view", "-n", "mk", "--clusterrole=view", "--user=carol")
        wait_for(lambda: hb.get("/api/v1/namespaces/mk/configmaps", headers=imp).status_code == 200, timeout=5, what="carol allowed on b")

    # A CRD created through the leader is served by the follower.
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "gizmos.mk.example.com"},
           "spec": {"group": "mk.example.com", "scope": "Namespaced", "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    a.kubectl("apply", "-f", "-", input=json.dumps(crd))
    wait_for(lambda: b.kubectl("get", "gizmos", "-n", "mk", check=False).returncode == 0, timeout=10, what="gizmos served by b")
    b.kubectl("apply", "-n", "mk", "-f", "-", input=json.dumps({"apiVersion": "mk.example.com/v1", "kind": "Gizmo", "metadata": {"name": "g1"}}))
    assert a.kjson("get", "gizmo", "g1", "-n", "mk")["metadata"]["name"] == "g1"

    # The leader's controllers (informers fed by the change feed) act on a Job created through the follower.
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "via-b"},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "python", "command": ["python", "-c", "print('hi')"]}]}}}}
    b.kubectl("apply", "-n", "mk", "-f", "-", input=json.dumps(job))
    b.kubectl("wait", "--for=condition=Complete", "job/via-b", "-n", "mk", "--timeout=60s")


def test_exactly_one_holds_the_lease_and_runs_controllers(cluster):
    a, b = cluster
    leases = a.kjson("get", "lease", "-n", "kube-system")["items"]
    assert [x["metadata"]["name"] for x in leases if x["metadata"]["name"].startswith("ketch-")] == ["ketch-controller-manager"]
    who = holder(b)
    assert who.endswith(f"_{a.port}"), f"the first ketch should lead; holder is {who!r}"
    assert holder(a) == who  # both read the same Lease
    assert b.kubectl("get", *LEASE).stdout.split("\n")[1].split()[1] == who  # the Holder column
    assert set(metric(a, "leader_election_master_status").values()) == {1.0}
    assert set(metric(b, "leader_election_master_status").values()) == {0.0}
    # The follower runs no controller: none of its work queues ever got a key; the leader's did.
    assert sum(metric(b, "workqueue_adds_total").values()) == 0
    assert sum(metric(a, "workqueue_adds_total").values()) > 0


@dsl.component
def step(i: int, marker: str) -> int:
    import time

    with open(marker, "a") as f:
        f.write(f"{i}\n")
    time.sleep(2.0)
    return i + 1


@dsl.pipeline
def chain(marker: str) -> int:
    s0 = step(i=0, marker=marker).set_caching_options(False)
    s1 = step(i=s0.output, marker=marker).set_caching_options(False)
    s2 = step(i=s1.output, marker=marker).set_caching_options(False)
    s3 = step(i=s2.output, marker=marker).set_caching_options(False)
    return s3.output


def test_kill9_of_the_leader_mid_pipeline_the_other_takes_over_and_finishes(cluster, tmp_path):
    a, b = cluster
    assert holder(b).endswith(f"_{a.port}")
    marker = tmp_path / "steps"
    run = b.kfp_client().create_run_from_pipeline_func(chain, arguments={"marker": str(marker)}, enable_caching=False)
    # Kill the leader while the second task runs (the first is done, two are still to come).
    wait_for(lambda: marker.exists() and len(marker.read_text().split()) >= 2, timeout=60, what="the second task started")
    a.kill9()
    killed = time.time()
    wait_for(lambda: holder(b).endswith(f"_{b.port}"), timeout=20, what="b holds the Lease")
    took_over = time.time() - killed
    res = b.kfp_client().wait_for_run_completion(run.run_id, timeout=120)
    assert res.state == "SUCCEEDED", res
    assert marker.read_text().split() == ["0", "1", "2", "3"], "each task ran exactly once, in order"
    with b.http() as h:
        d = h.get(f"/apis/v2beta1/runs/{run.run_id}").json()
    assert d["pipeline_outputs"]["parameters"]["Output"] == 4
    assert set(metric(b, "leader_election_master_status").values()) == {1.0}
    assert b.kjson("get", *LEASE)["spec"]["leaseTransitions"] == 1
    print(f"\nfailover: b held the Lease {took_over:.1f}s after the kill -9 of a")

    # The old leader comes back as a follower: the Lease stays with b.
    a.start(timeout=60)
    time.sleep(2.0)  # a few retry periods of campaigning
    assert holder(a).endswith(f"_{b.port}")
    assert set(metric(a, "leader_election_master_status").values()) == {0.0}

    # A leader that stops cleanly releases the Lease (no holder, rather than its name until it expires),
    # and the other takes it.
    b.stop()
    assert not holder(a).endswith(f"_{b.port}")
    wait_for(lambda: holder(a).endswith(f"_{a.port}"), timeout=10, what="a holds the Lease again")
    a.stop()
    wait_for(lambda: not ketch_processes(a) and not ketch_processes(b), timeout=20, what="no process of either ketch left")
