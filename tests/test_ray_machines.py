"""The Ray kubelet across machines that share nothing but a network (ray_machines_helpers.py): a Ray head on a
bridge's address in the root namespace (where ketch runs, ``--host 0.0.0.0``, with its artifacts in moto's S3
on the bridge), and two "machines", each a Ray worker node in its own network namespace (its own address, its
own eth0) and mount namespace, where ketch's home and every file of this test are hidden under an empty
tmpfs. What a Pod there gets of ketch's files, it gets through the node's warm worker; what comes back
(output, exit, a pipeline task's result) comes back the same way.

- ``kubectl get nodes`` shows each machine as a Node with its own InternalIP.
- A Pod on a machine (nodeSelector) runs there, at its machine's address, without seeing this test's
  files; it reads its configMap volume, its init container's emptyDir file, and calls ketch's API with its
  kubeconfig and ServiceAccount token; its log comes back while it runs and after it ended.
- A KFP fan-out (the head tainted, so its tasks go to the machines) with its Datasets in S3 runs each task
  on a machine and a join reads them all.
- A 2-replica PyTorchJob, one replica per machine, trains with DDP over gloo, MASTER_ADDR being the
  master's machine address."""


import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import kubectl_bin, make_ketch
from conftest import wait_for as _wait_for

ray = pytest.importorskip("ray")
pytest.importorskip("moto")
pytest.importorskip("s3fs")
pytest.importorskip("kfp")
import ray_fanout  # noqa: E402
import ray_machines_helpers as helpers  # noqa: E402
import test_storage_s3  # noqa: E402

PY = sys.executable
SCRIPTS = Path(__file__).parent / "training_scripts"
BUCKET = "ketch-machines"
WIDTH = 4
MACHINES = ("machine-1", "machine-2")


def wait_for(fn, timeout: float = 30.0, what: str = "condition", interval: float = 0.5):
    return _wait_for(fn, timeout, interval, what)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    why = helpers.unavailable()
    if why:
        pytest.skip(f"machines in network namespaces: {why}")
    base = tmp_path_factory.getbasetemp()  # ketch's home and every file of this test: hidden on the machines
    with helpers.machines(tmp_path_factory.mktemp("machines-logs"), [str(base)]) as m:
        yield m


@pytest.fixture(scope="module")
def moto_url(net):
    port = helpers.free_port(net.bridge_ip)
    proc = subprocess.Popen([PY, "-m", "moto.server", "-H", net.bridge_ip, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{net.bridge_ip}:{port}"
    try:
        wait_for(lambda: test_storage_s3._up(url), timeout=30, what="moto server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def k(net, moto_url, tmp_path_factory):
    test_storage_s3.s3_client(moto_url).create_bucket(Bucket=BUCKET)
    env = {**helpers.RAY_ENV, "KETCH_KUBELET": "ray", "KETCH_RAY_ADDRESS": net.head_address, "KETCH_RAY_NODE_POLL": "1",
           "KETCH_ARTIFACTS": f"s3://{BUCKET}/m/", "KETCH_S3_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "KETCH_BACKOFF_BASE_SECONDS": "0.2"}
    kt = make_ketch(tmp_path_factory.mktemp("machines"), env=env, extra_args=["--host", "0.0.0.0"])
    kt.start(timeout=90)
    try:
        wait_for(lambda: sum(ready(n) == "True" for n in kt.kjson("get", "nodes")["items"]) == 3, timeout=90, what="three ready nodes")
        yield kt
    except BaseException:
        print(net.log_tail())
        raise
    finally:
        kt.stop()


def ready(node: dict) -> str:
    return next((c["status"] for c in (node.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), "")


def nodes(k) -> dict[str, dict]:
    return {n["metadata"]["name"]: n for n in k.kjson("get", "nodes")["items"]}


def internal_ip(node: dict) -> str:
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


def phase(k, name: str, ns: str = "default") -> str:
    return (k.kjson("get", "pod", name, "-n", ns).get("status") or {}).get("phase") or ""


def test_each_machine_is_a_node_with_its_own_address(k, net):
    by_name = nodes(k)
    assert set(by_name) == {"head", *MACHINES}, sorted(by_name)
    assert internal_ip(by_name["head"]) == net.bridge_ip
    for mc in net.machines:
        assert internal_ip(by_name[mc.name]) == mc.ip
        assert by_name[mc.name]["metadata"]["labels"][f"ray.io/resource.{mc.name}"] == "1"
    wide = k.kubectl("get", "nodes", "-o", "wide").stdout
    assert "INTERNAL-IP" in wide.splitlines()[0], wide
    for mc in net.machines:
        assert re.search(rf"^{mc.name}\s+Ready\s.*\s{re.escape(mc.ip)}\s", wide, re.M), wide


POD_MAIN = """
import json, os, subprocess, sys, time
me = os.environ["HOSTNAME"]
kc = subprocess.run([{kubectl!r}, "get", "pod", me, "-o", "jsonpath={{.spec.nodeName}}"], capture_output=True, text=True)
info = {{"pod_ip": os.environ["POD_IP"], "ray_node": os.environ["KETCH_RAY_NODE_ID"], "sees_test_files": os.path.exists({marker!r}),
        "config": open("/etc/cfg/greeting").read(), "scratch": open("/scratch/from-init").read(),
        "kubectl": [kc.returncode, kc.stdout, kc.stderr[-300:]]}}
print("first", json.dumps(info), flush=True)
time.sleep(6)
print("second and last", flush=True)
"""


def test_a_pod_on_a_machine_runs_there_with_its_files_and_its_logs_come_back(k, net, tmp_path):
    marker = tmp_path / "only-on-ketchs-machine"
    marker.write_text("x")
    mc = net.machines[0]
    k.kubectl("create", "configmap", "cfg", "--from-literal=greeting=hello from the api")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "remote"}, "spec": {
        "restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": mc.name},
        "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "scratch", "emptyDir": {}}],
        "initContainers": [{"name": "prep", "image": "python:3.11", "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                            "command": [PY, "-c", "open('/scratch/from-init', 'w').write('left by the init container')"]}],
        "containers": [{"name": "main", "image": "python:3.11", "command": [PY, "-c", POD_MAIN.format(kubectl=kubectl_bin(), marker=str(marker))],
                        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "scratch", "mountPath": "/scratch"}]}]}}
    k.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))

    def live():  # the first line, while the container still runs
        out = k.kubectl("logs", "remote", "-c", "main", check=False).stdout
        return out if out.startswith("first ") else None

    try:
        out = wait_for(live, timeout=90, what="the running pod's first log line")
    except AssertionError:
        print(k.kubectl("get", "pod", "remote", "-o", "yaml").stdout, net.log_tail(), k.log(), sep="\n")
        raise
    assert phase(k, "remote") == "Running" and "second" not in out, out
    uid = k.kjson("get", "pod", "remote")["metadata"]["uid"]
    pod_dir = k.home / "kubelet" / "pods" / uid
    on_machine = mc.run("sh", "-c", f"cat {pod_dir}/kubeconfig >/dev/null && ls {pod_dir}/volumes/cfg && ls {pod_dir}/volumes/scratch && test ! -e {marker}")
    assert on_machine.returncode == 0 and on_machine.stdout.split() == ["greeting", "from-init"], on_machine  # laid there, at ketch's paths
    wait_for(lambda: phase(k, "remote") in ("Succeeded", "Failed"), timeout=60, what="the pod to end")
    out = k.kubectl("logs", "remote", "-c", "main").stdout
    assert phase(k, "remote") == "Succeeded", out
    first, last = out.strip().splitlines()
    assert last == "second and last"
    info = json.loads(first.removeprefix("first "))
    assert info["pod_ip"] == mc.ip  # its machine's address
    assert info["ray_node"] == nodes(k)[mc.name]["metadata"]["labels"]["ray.io/node-id"]
    assert info["sees_test_files"] is False  # another machine: this test's files are not there
    assert info["config"] == "hello from the api"  # the configMap volume, shipped
    assert info["scratch"] == "left by the init container"  # the emptyDir, on the machine, shared by the pod's containers
    assert info["kubectl"] == [0, mc.name, ""], info["kubectl"]  # its kubeconfig and token, shipped; ketch reached over the bridge
    assert k.kjson("get", "pod", "remote")["status"]["hostIP"] == mc.ip
    k.kubectl("delete", "pod", "remote", "--wait=true")
    wait_for(lambda: mc.run("test", "-e", str(pod_dir)).returncode == 1, timeout=30, what="the pod's files gone from its machine")


fan_out = ray_fanout.fan_out(WIDTH)


@pytest.fixture(scope="module")
def machines_only(k):
    """The head (ketch's own machine) tainted: Pods without a toleration go to the machines."""
    k.kubectl("taint", "nodes", "head", "ketch.dev/api-only=true:NoSchedule")
    return k


def test_a_pipeline_fan_out_runs_on_the_machines_with_its_artifacts_in_s3(machines_only, moto_url, net):
    k = machines_only
    c = k.kfp_client()
    rid = c.create_run_from_pipeline_func(fan_out, enable_caching=False).run_id
    wait_for(lambda: c.get_run(rid).state in ("SUCCEEDED", "FAILED"), timeout=150, interval=1, what="the run to end")
    raw = k.http().get(f"/apis/v2beta1/runs/{rid}").json()
    assert raw["state"] == "SUCCEEDED", (raw.get("error"), k.log()[-3000:])
    assert raw["pipeline_outputs"]["parameters"] == {"Output": WIDTH}
    details = [t for t in raw["run_details"]["task_details"] if t.get("pod_name")]
    by_name = nodes(k)
    s3 = test_storage_s3.s3_client(moto_url)

    def body(uri: str) -> str:
        assert uri.startswith(f"s3://{BUCKET}/m/"), uri
        return s3.get_object(Bucket=BUCKET, Key=uri[len(f"s3://{BUCKET}/"):])["Body"].read().decode()

    lines, used = {}, []
    for t in details:
        node = k.kjson("get", "pod", "-n", "kubeflow", t["pod_name"])["spec"]["nodeName"]
        assert node in MACHINES, (t["task_name"], node)
        used.append(node)
        if t["task_name"].startswith("make-part"):
            (art,) = t["artifacts"]["outputs"]["part"]
            text = body(art["uri"])
            assert text == f"part-{art['metadata']['i']} on {by_name[node]['metadata']['labels']['ray.io/node-id']}\n", (text, node)
            lines[art["metadata"]["i"]] = text
    assert sorted(lines) == list(range(WIDTH))
    print("task Pods per machine:", {n: used.count(n) for n in MACHINES})
    joined = next(t for t in details if t["task_name"] == "join")
    (merged,) = joined["artifacts"]["outputs"]["merged"]
    assert body(merged["uri"]) == "".join(lines[i] for i in range(WIDTH))


def test_a_pytorchjob_across_the_two_machines_trains_with_ddp(machines_only, net):
    pytest.importorskip("torch", reason="needs the torch extra")
    k = machines_only
    k.kubectl("create", "namespace", "ddp")
    code = textwrap.dedent(f"""
        import os, runpy
        print('ray-node', os.environ['KETCH_RAY_NODE_ID'], 'master', os.environ['MASTER_ADDR'], flush=True)
        runpy.run_path({str(SCRIPTS / 'ddp_train.py')!r}, run_name='__main__')""")
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"training.kubeflow.org/job-name": "ddp"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    env = [{"name": "STEPS", "value": "10"}, {"name": "GLOO_SOCKET_IFNAME", "value": "eth0"}]  # each machine's own interface
    tmpl = {"spec": {"affinity": anti, "containers": [{"name": "pytorch", "image": "python:3.11", "command": [PY, "-c", code], "env": env}]}}
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "ddp"},
           "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": tmpl}, "Worker": {"replicas": 1, "template": tmpl}}}}
    k.kubectl("create", "-n", "ddp", "-f", "-", input=yaml.safe_dump(job))
    r = k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/ddp", "-n", "ddp", "--timeout=120s", timeout=140, check=False)
    logs = {n: k.kubectl("logs", n, "-n", "ddp", check=False).stdout for n in ("ddp-master-0", "ddp-worker-0")}
    assert r.returncode == 0, (r.stderr, logs)
    by_name = nodes(k)
    master_node = k.kjson("get", "pod", "ddp-master-0", "-n", "ddp")["spec"]["nodeName"]
    used, sums = set(), set()
    for rank, name in enumerate(["ddp-master-0", "ddp-worker-0"]):
        node = k.kjson("get", "pod", name, "-n", "ddp")["spec"]["nodeName"]
        out = logs[name]
        m = re.search(r"ray-node (\w+) master (\S+)", out)
        assert m and m.group(2) == internal_ip(by_name[master_node]) == next(mc.ip for mc in net.machines if mc.name == master_node), out
        assert by_name[node]["metadata"]["labels"]["ray.io/node-id"] == m.group(1)
        t = re.search(r"rank=(\d+) world=2 .*in_sync=True checksum=(\S+)", out)
        assert t and int(t.group(1)) == rank, out
        used.add(node)
        sums.add(t.group(2))
    assert used == set(MACHINES) and len(sums) == 1
