"""The Ray kubelet on a multi-node Ray cluster (ray.cluster_utils.Cluster: 3 raylets on this machine, each with
its own custom resource and labels): a Node per Ray node, Pods placed by nodeSelector and pod anti-affinity
on the Node asked for *and* run by Ray on that very node (the container prints the Ray node id its actor
runs on), a PyTorchJob spread one replica per node training with DDP over gloo, an InferenceService whose two
replicas on two nodes serve through the gateway at their nodes' addresses, a job placed as one STRICT_SPREAD
Ray placement group, and a node removed from the cluster: its Node turns NotReady, its Job Pod fails NodeLost and the Job finishes on another node."""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import make_ketch
from conftest import wait_for as _wait_for

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

PY = sys.executable
SCRIPTS = Path(__file__).parent / "training_scripts"
SHOW = "import os; print('ray-node', os.environ['KETCH_RAY_NODE_ID'], 'pod-ip', os.environ.get('POD_IP'), flush=True)"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"zone-a": 1}, "labels": {"tier": "head"}})
    nodes = {"b": c.add_node(num_cpus=1, resources={"zone-b": 1}, labels={"ketch.dev/node-name": "node-b", "tier": "cpu"}),
             "c": c.add_node(num_cpus=1, resources={"zone-c": 1}, labels={"ketch.dev/node-name": "node-c", "tier": "cpu"})}
    c.wait_for_nodes()
    try:
        yield c, nodes
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def k(cluster, tmp_path_factory):
    c, _ = cluster
    kt = make_ketch(tmp_path_factory.mktemp("raynodes"), env={
        "KETCH_KUBELET": "ray", "KETCH_RAY_ADDRESS": c.address, "KETCH_RAY_NODE_POLL": "1", "KETCH_BACKOFF_BASE_SECONDS": "0.2"})
    kt.start(timeout=60)
    try:
        wait_for(lambda: len(kt.kjson("get", "nodes")["items"]) == 3, timeout=60, what="three nodes")
        yield kt
    finally:
        kt.stop()


def wait_for(fn, timeout: float = 30.0, what: str = "condition"):
    return _wait_for(fn, timeout, 0.5, what)  # each look is a kubectl run: not ten a second on two cores


def nodes(k) -> dict[str, dict]:
    return {n["metadata"]["name"]: n for n in k.kjson("get", "nodes")["items"]}


def by_resource(k, res: str) -> dict:
    return next(n for n in nodes(k).values() if n["metadata"]["labels"].get(f"ray.io/resource.{res}") == "1")


def ready(node: dict) -> str:
    return next(c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready")


def pod_yaml(name: str, code: str, labels: dict | None = None, **spec) -> str:
    c = {"name": "main", "image": "python:3.11", "command": [PY, "-c", code],
         "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
                           "spec": {"restartPolicy": "Never", "containers": [c], **spec}})


def ran_on(k, name: str, ns: str = "default") -> tuple[str, str]:
    """(the Node the Pod is bound to, the Ray node id its process printed) once it succeeded."""
    wait_for(lambda: (k.kjson("get", "pod", name, "-n", ns).get("status") or {}).get("phase") in ("Succeeded", "Failed"), timeout=90, what=f"{name} done")
    pod = k.kjson("get", "pod", name, "-n", ns)
    out = k.kubectl("logs", name, "-n", ns).stdout
    assert pod["status"]["phase"] == "Succeeded", out
    m = re.search(r"ray-node (\w+)", out)
    assert m, out
    return pod["spec"]["nodeName"], m.group(1)


def test_every_ray_node_is_a_node(k, cluster):
    c, _ = cluster
    out = k.kubectl("get", "nodes").stdout
    assert len(out.strip().splitlines()) == 4 and out.count(" Ready ") == 3, out
    ns = nodes(k)
    assert {"node-b", "node-c"} <= set(ns)
    head = by_resource(k, "zone-a")
    labels = head["metadata"]["labels"]
    assert re.fullmatch(r"[a-z0-9-]+-[0-9a-f]{6}", head["metadata"]["name"])  # <hostname>-<node id prefix>
    assert labels["ray.io/node-id"].startswith(head["metadata"]["name"][-6:]) and labels["tier"] == "head"
    assert "node-role.kubernetes.io/control-plane" in labels and labels["kubernetes.io/hostname"] == head["metadata"]["name"]
    assert head["status"]["capacity"]["cpu"] == "2" and head["status"]["capacity"]["ray.io/zone-a"] == "1"
    assert ns["node-b"]["status"]["capacity"]["cpu"] == "1" and ns["node-b"]["metadata"]["labels"]["tier"] == "cpu"
    ips = {a["address"] for n in ns.values() for a in n["status"]["addresses"] if a["type"] == "InternalIP"}
    assert ips == {c.head_node.node_ip_address}


def test_node_selector_runs_the_pod_on_that_ray_node(k):
    want = by_resource(k, "zone-b")
    k.kubectl("apply", "-f", "-", input=pod_yaml("sel", SHOW, nodeSelector={"ray.io/resource.zone-b": "1"}))
    node, ray_id = ran_on(k, "sel")
    assert node == want["metadata"]["name"] == "node-b"
    assert ray_id == want["metadata"]["labels"]["ray.io/node-id"]  # Ray ran it there, not just the API
    pod = k.kjson("get", "pod", "sel")
    ip = next(a["address"] for a in want["status"]["addresses"] if a["type"] == "InternalIP")
    assert pod["status"]["podIP"] == pod["status"]["hostIP"] == ip
    assert f"pod-ip {ip}" in k.kubectl("logs", "sel").stdout
    ev = k.kjson("get", "events", "--field-selector", "involvedObject.name=sel,reason=Scheduled")["items"]
    assert ev and ev[0]["message"] == "Successfully assigned default/sel to node-b"


def test_anti_affinity_puts_one_pod_on_each_node_and_a_fourth_waits(k):
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "spread"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    hold = "import time; " + SHOW.replace("import os;", "import os, time;") + "; time.sleep(4)"
    for i in range(3):
        k.kubectl("apply", "-f", "-", input=pod_yaml(f"spread-{i}", hold, {"app": "spread"}, affinity=anti))
    k.kubectl("apply", "-f", "-", input=pod_yaml("spread-3", SHOW, {"app": "spread"}, affinity=anti))

    def unschedulable():
        conds = (k.kjson("get", "pod", "spread-3").get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "PodScheduled" and c["status"] == "False"), None)

    cond = wait_for(unschedulable, timeout=30, what="the fourth pod unschedulable")
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    placed = [ran_on(k, f"spread-{i}") for i in range(3)]
    by_name = nodes(k)
    assert len({n for n, _ in placed}) == 3
    for n, rid in placed:
        assert by_name[n]["metadata"]["labels"]["ray.io/node-id"] == rid
    # once the three are done, they hold no place: the fourth is scheduled
    node, rid = ran_on(k, "spread-3")
    assert by_name[node]["metadata"]["labels"]["ray.io/node-id"] == rid


def test_a_pytorchjob_spread_over_the_nodes_trains_with_ddp(k):
    pytest.importorskip("torch", reason="needs the torch extra")
    k.kubectl("create", "namespace", "ddp")
    code = ("import os, runpy; print('ray-node', os.environ['KETCH_RAY_NODE_ID'], 'master', os.environ['MASTER_ADDR'], flush=True); "
            f"runpy.run_path({str(SCRIPTS / 'ddp_train.py')!r}, run_name='__main__')")
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"training.kubeflow.org/job-name": "ddp"}}, "topologyKey": "kubernetes.io/hostname"}]}}

    def replica(n: int) -> dict:
        c = {"name": "pytorch", "image": "python:3.11", "command": [PY, "-c", code], "env": [{"name": "STEPS", "value": "10"}]}
        return {"replicas": n, "template": {"spec": {"affinity": anti, "containers": [c]}}}

    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "ddp"},
           "spec": {"pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(2)}}}
    k.kubectl("create", "-n", "ddp", "-f", "-", input=yaml.safe_dump(job))
    k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/ddp", "-n", "ddp", "--timeout=150s", timeout=170)
    by_name = nodes(k)
    master_node = k.kjson("get", "pod", "ddp-master-0", "-n", "ddp")["spec"]["nodeName"]
    master_ip = next(a["address"] for a in by_name[master_node]["status"]["addresses"] if a["type"] == "InternalIP")
    used, sums = set(), set()
    for rank, name in enumerate(["ddp-master-0", "ddp-worker-0", "ddp-worker-1"]):
        pod = k.kjson("get", "pod", name, "-n", "ddp")
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["MASTER_ADDR"] == "$(DDP_MASTER_0_SERVICE_HOST)"  # resolved by the kubelet at start
        out = k.kubectl("logs", name, "-n", "ddp").stdout
        m = re.search(r"ray-node (\w+) master (\S+)", out)
        assert m and m.group(2) == master_ip, out
        assert by_name[pod["spec"]["nodeName"]]["metadata"]["labels"]["ray.io/node-id"] == m.group(1)
        used.add(pod["spec"]["nodeName"])
        t = re.search(r"rank=(\d+) world=3 .*in_sync=True checksum=(\S+)", out)
        assert t and int(t.group(1)) == rank, out
        sums.add(t.group(2))
    assert len(used) == 3 and len(sums) == 1


def test_an_inferenceservice_with_two_replicas_on_two_nodes_serves_through_the_gateway(k, tmp_path):
    pytest.importorskip("sklearn")
    from serving_helpers import IRIS_ROW, train_sklearn

    model = train_sklearn(tmp_path / "iris", "lr")
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"serving.kserve.io/inferenceservice": "iris"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "iris"},
            "spec": {"predictor": {"minReplicas": 2, "maxReplicas": 2, "affinity": anti, "sklearn": {"storageUri": str(tmp_path / "iris")}}}}
    k.kubectl("apply", "-f", "-", input=yaml.safe_dump(isvc))
    k.kubectl("wait", "--for=condition=Ready", "inferenceservice/iris", "--timeout=120s", timeout=140)
    wait_for(lambda: len([p for p in k.kjson("get", "pods", "-l", "serving.kserve.io/inferenceservice=iris")["items"]
                          if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]) == 2,
             timeout=90, what="both replicas ready")
    pods = k.kjson("get", "pods", "-l", "serving.kserve.io/inferenceservice=iris")["items"]
    by_name = nodes(k)
    assert len({p["spec"]["nodeName"] for p in pods}) == 2
    for p in pods:  # each replica is reached at its node's address
        ip = next(a["address"] for a in by_name[p["spec"]["nodeName"]]["status"]["addresses"] if a["type"] == "InternalIP")
        assert p["status"]["podIP"] == ip
    url = k.kubectl("get", "inferenceservice", "iris", "-o", "jsonpath={.status.url}").stdout
    with k.http() as h:
        for _ in range(8):
            r = h.post(f"{url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]})
            assert r.status_code == 200 and r.json() == {"predictions": model.predict([IRIS_ROW]).tolist()}, r.text
    for p in pods:  # the gateway spread the requests over both replicas
        wait_for(lambda p=p: "POST /v1/models/iris:predict" in k.kubectl("logs", p["metadata"]["name"]).stdout, timeout=20,
                 what=f"requests served by {p['metadata']['name']}")
    k.kubectl("delete", "inferenceservice", "iris")


def test_a_job_asking_strict_spread_is_placed_as_one_ray_placement_group(k):
    # Every replica prefers node-b, so the scheduler alone would put all three there; the placement group
    # (STRICT_SPREAD: one bundle per node, all or none) puts one on each node.
    prefer = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-b"]}]}}]}}

    def job(name: str, workers: int) -> dict:
        c = {"name": "pytorch", "image": "python:3.11", "command": [PY, "-c", SHOW]}
        rs = {"template": {"spec": {"affinity": prefer, "containers": [c]}}}
        return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                "metadata": {"name": name, "annotations": {"ketch.dev/placement-strategy": "STRICT_SPREAD"}},
                "spec": {"pytorchReplicaSpecs": {"Master": {**rs, "replicas": 1}, "Worker": {**rs, "replicas": workers}}}}

    k.kubectl("create", "-f", "-", input=yaml.safe_dump(job("gang", 2)))
    k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/gang", "--timeout=90s", timeout=100)
    by_name = nodes(k)
    placed = [ran_on(k, n) for n in ("gang-master-0", "gang-worker-0", "gang-worker-1")]
    assert len({n for n, _ in placed}) == 3
    for n, rid in placed:
        assert by_name[n]["metadata"]["labels"]["ray.io/node-id"] == rid
    ann = k.kjson("get", "pod", "gang-worker-1")["metadata"]["annotations"]
    assert ann["ketch.dev/placement-group-size"] == "3" and ann["ketch.dev/placement-index"] == "2"
    # four bundles cannot be spread over three nodes: none of the four is placed, and each says why
    k.kubectl("create", "-f", "-", input=yaml.safe_dump(job("toobig", 3)))

    def held():
        pods = k.kjson("get", "pods", "-l", "training.kubeflow.org/job-name=toobig")["items"]
        msgs = [next((c.get("message", "") for c in (p.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"), "") for p in pods]
        return len(pods) == 4 and all("(4 bundles, STRICT_SPREAD)" in m for m in msgs) and pods

    pods = wait_for(held, timeout=30, what="the four replicas held")
    assert not any(p["spec"].get("nodeName") for p in pods)
    k.kubectl("delete", "pytorchjob", "toobig", "gang")
    bad = job("bad", 1)
    bad["metadata"]["annotations"]["ketch.dev/placement-strategy"] = "EVERYWHERE"
    r = k.kubectl("create", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert r.returncode != 0 and "metadata.annotations[ketch.dev/placement-strategy]" in r.stderr and "STRICT_SPREAD" in r.stderr, r.stderr


def test_a_lost_node_turns_notready_and_its_job_pod_is_recreated_elsewhere(k, cluster):
    c, added = cluster
    target = nodes(k)["node-c"]
    rid = target["metadata"]["labels"]["ray.io/node-id"]
    # On node-c the process waits (until its Ray worker goes: it then exits, leaving nothing behind); elsewhere it succeeds.
    code = textwrap.dedent(f"""
        import os, time
        print('ray-node', os.environ['KETCH_RAY_NODE_ID'], flush=True)
        parent = os.getppid()
        while os.environ['KETCH_RAY_NODE_ID'] == {rid!r} and os.getppid() == parent and time.time() < {__import__('time').time() + 150}:
            time.sleep(0.2)
        """)
    prefer = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-c"]}]}}]}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "survivor"},
           "spec": {"backoffLimit": 3, "template": {"spec": {"restartPolicy": "Never", "affinity": prefer,
                                                             "containers": [{"name": "main", "image": "python:3.11", "command": [PY, "-c", code]}]}}}}
    k.kubectl("create", "-f", "-", input=yaml.safe_dump(job))

    def first_running():
        pods = k.kjson("get", "pods", "-l", "job-name=survivor")["items"]
        return next((p for p in pods if p["status"].get("phase") == "Running" and rid in k.kubectl("logs", p["metadata"]["name"], check=False).stdout), None)

    first = wait_for(first_running, timeout=60, what="the job's pod running on node-c")
    assert first["spec"]["nodeName"] == "node-c"
    c.remove_node(added["c"])
    wait_for(lambda: ready(nodes(k)["node-c"]) != "True", timeout=30, what="node-c NotReady")
    node = nodes(k)["node-c"]
    assert ready(node) == "Unknown"
    assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} >= {("node.kubernetes.io/unreachable", "NoExecute")}
    assert "NotReady" in k.kubectl("get", "node", "node-c").stdout
    lost = wait_for(lambda: (p := k.kjson("get", "pod", first["metadata"]["name"]))["status"].get("phase") == "Failed" and p,
                    timeout=30, what="the pod on node-c failed")
    assert lost["status"]["reason"] == "NodeLost"
    assert lost["status"]["message"] == f"Node node-c which was running pod {first['metadata']['name']} is unresponsive"
    k.kubectl("wait", "--for=condition=Complete", "job/survivor", "--timeout=90s", timeout=100)
    pods = k.kjson("get", "pods", "-l", "job-name=survivor")["items"]
    done = [p for p in pods if p["status"]["phase"] == "Succeeded"]
    assert len(done) == 1 and done[0]["spec"]["nodeName"] != "node-c"
    assert k.kjson("get", "job", "survivor")["status"].get("failed") == 1
    # the scheduler says why node-c takes nothing now
    k.kubectl("apply", "-f", "-", input=pod_yaml("pinned", SHOW, nodeSelector={"kubernetes.io/hostname": "node-c"}))

    def msg():
        conds = (k.kjson("get", "pod", "pinned").get("status") or {}).get("conditions") or []
        return next((c["message"] for c in conds if c["type"] == "PodScheduled" and c["status"] == "False"), None)

    m = wait_for(msg, timeout=30, what="pinned unschedulable")
    assert m == ("0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
                 "2 node(s) didn't match Pod's node affinity/selector.")


def test_a_restarted_ketch_adopts_its_running_containers_on_ray(k, cluster, tmp_path):
    """kill -9 of ketch leaves a container running on a Ray node (its node's warm worker is a detached actor);
    ketch started again on the same home and Ray cluster adopts it: the Pod stays Running with the same
    process, the exit code it ends with is recorded, and its resource reservation actor is removed."""
    import time

    import psutil

    c, _ = cluster
    go = tmp_path / "go"
    code = (f"import os, pathlib, time\nprint('pid', os.getpid(), flush=True)\n"
            f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.1)\nprint('bye', flush=True)\nraise SystemExit(7)")
    ctr = {"name": "main", "image": "python:3.11", "command": [PY, "-c", code], "resources": {"requests": {"cpu": "0.5"}}}
    k.kubectl("apply", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "keeper"},
                                                        "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": "node-b"},
                                                                 "containers": [ctr]}}))
    pid = int(wait_for(lambda: (m := re.search(r"pid (\d+)", k.kubectl("logs", "keeper", check=False).stdout)) and m.group(1),
                       timeout=60, what="keeper running"))
    before = k.kjson("get", "pod", "keeper")
    uid = before["metadata"]["uid"]
    assert before["status"]["phase"] == "Running" and before["spec"]["nodeName"] == "node-b"
    started = psutil.Process(pid).create_time()
    ray.init(address=c.address, namespace="ketch", log_to_driver=False)
    try:
        def reservations() -> list[str]:
            return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if uid in a["name"]]

        assert reservations() == [f"ketch-{reservations()[0].split('-')[1]}-{uid}-main-0"]  # named by pod uid, container, run

        k.kill9()
        time.sleep(1.0)
        assert psutil.Process(pid).create_time() == started  # the container outlives ketch
        k.start(timeout=60)
        wait_for(lambda: "adopted default/keeper container main" in k.log(), timeout=30, what="adoption")
        time.sleep(3.0)  # past the 2 s an unadopted container waits for an exit record before ContainerStatusUnknown
        now = k.kjson("get", "pod", "keeper")
        st = now["status"]["containerStatuses"][0]
        assert now["status"]["phase"] == "Running" and "running" in st["state"], st
        assert st["restartCount"] == 0 and st["containerID"] == before["status"]["containerStatuses"][0]["containerID"]
        assert psutil.Process(pid).create_time() == started
        go.touch()
        wait_for(lambda: (k.kjson("get", "pod", "keeper").get("status") or {}).get("phase") == "Failed", timeout=30, what="keeper ended")
        term = k.kjson("get", "pod", "keeper")["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == 7 and term["reason"] == "Error", term
        out = k.kubectl("logs", "keeper").stdout
        assert f"pid {pid}" in out and "bye" in out, out  # output from before and after the restart
        wait_for(lambda: not reservations(), timeout=15, what="the reservation actor removed")
        k.kubectl("delete", "pod", "keeper")
    finally:
        ray.shutdown()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
