"""Scale-out with shared storage: ketch on a 3-node Ray cluster (ray.cluster_utils.Cluster, three raylets on
this machine) with its artifacts in S3 (moto's server), listening on every interface (``--host 0.0.0.0``),
as a ketch whose Ray nodes are other machines must.

- A KFP pipeline (the real kfp SDK) fans out over a ParallelFor of six tasks, each writing a Dataset that
  names the Ray node its process ran on, and a join reads them all: the run succeeds, the task Pods are
  spread over more than one Node by the scheduler's least-allocated scoring, each Pod's ``spec.nodeName``
  is the Node of the Ray node that really ran it, and the artifacts are objects in the bucket (read with
  boto3, not through ketch) with that content.
- A Pod is given ketch's reachable address (the API node's IP, not 127.0.0.1) in ``KUBERNETES_SERVICE_HOST``,
  ``KETCH_SERVER`` and its kubeconfig, and calls the API through it over TLS with its ServiceAccount
  token: with kubectl and with ketch's in-pod helper, both verifying ketch's certificate for that IP."""

import json
import sys
from collections import Counter

import httpx
import pytest
import yaml

from conftest import kubectl_bin, make_ketch
from conftest import wait_for as _wait_for

ray = pytest.importorskip("ray")
pytest.importorskip("moto")
pytest.importorskip("s3fs")
pytest.importorskip("kfp")
from ray.cluster_utils import Cluster  # noqa: E402

import ray_fanout  # noqa: E402
import test_storage_s3  # noqa: E402

moto_url = test_storage_s3.moto_url  # moto's S3 server: one fixture for both files
s3_client = test_storage_s3.s3_client

BUCKET = "ketch-fanout"
PREFIX = "scale"
WIDTH = 6


def wait_for(fn, timeout: float = 30.0, what: str = "condition", interval: float = 0.5):
    return _wait_for(fn, timeout, interval, what)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    c.add_node(num_cpus=2, labels={"ketch.dev/node-name": "node-b"})
    c.add_node(num_cpus=2, labels={"ketch.dev/node-name": "node-c"})
    c.wait_for_nodes()
    try:
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def k(cluster, moto_url, tmp_path_factory):
    s3_client(moto_url).create_bucket(Bucket=BUCKET)
    env = {"KETCH_KUBELET": "ray", "KETCH_RAY_ADDRESS": cluster.address, "KETCH_RAY_NODE_POLL": "1",
           "KETCH_ARTIFACTS": f"s3://{BUCKET}/{PREFIX}/", "KETCH_S3_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    kt = make_ketch(tmp_path_factory.mktemp("rays3"), env=env, extra_args=["--host", "0.0.0.0"])
    kt.start(timeout=60)
    try:
        wait_for(lambda: len(kt.kjson("get", "nodes")["items"]) == 3, timeout=60, what="three nodes")
        yield kt
    finally:
        kt.stop()


def nodes(k) -> dict[str, dict]:
    return {n["metadata"]["name"]: n for n in k.kjson("get", "nodes")["items"]}


fan_out = ray_fanout.fan_out(WIDTH)


def test_a_fan_out_spreads_over_the_nodes_with_its_artifacts_in_s3(k, moto_url):
    c = k.kfp_client()
    rid = c.create_run_from_pipeline_func(fan_out, enable_caching=False).run_id
    wait_for(lambda: c.get_run(rid).state in ("SUCCEEDED", "FAILED"), timeout=150, interval=1, what="the run to end")
    raw = k.http().get(f"/apis/v2beta1/runs/{rid}").json()
    assert raw["state"] == "SUCCEEDED", (raw.get("error"), k.log()[-3000:])
    assert raw["pipeline_outputs"]["parameters"] == {"Output": WIDTH}

    details = [t for t in raw["run_details"]["task_details"] if t.get("pod_name")]
    parts = [t for t in details if t["task_name"].startswith("make-part")]
    assert len(parts) == WIDTH, [t["task_name"] for t in details]
    by_name = nodes(k)
    s3 = s3_client(moto_url)
    root = f"s3://{BUCKET}/{PREFIX}/pipelines/{rid}/"

    def body(uri: str) -> str:
        assert uri.startswith(root), uri
        return s3.get_object(Bucket=BUCKET, Key=uri[len(f"s3://{BUCKET}/"):])["Body"].read().decode()

    used, lines = [], {}
    for t in parts:
        pod = k.kjson("get", "pod", "-n", "kubeflow", t["pod_name"])
        node = pod["spec"]["nodeName"]
        used.append(node)
        (art,) = t["artifacts"]["outputs"]["part"]
        text = body(art["uri"])  # the object itself, in the bucket
        i = art["metadata"]["i"]
        # the content names the Ray node the task's process ran on: the very one of the Pod's Node
        assert text == f"part-{i} on {by_name[node]['metadata']['labels']['ray.io/node-id']}\n", (text, node)
        lines[i] = text
    assert sorted(lines) == list(range(WIDTH))
    print("task Pods per Node:", Counter(used))
    assert len(set(used)) > 1, f"all {WIDTH} task Pods went to {set(used)}"
    joined = next(t for t in details if t["task_name"] == "join")
    (merged,) = joined["artifacts"]["outputs"]["merged"]
    assert body(merged["uri"]) == "".join(lines[i] for i in range(WIDTH))


CALL_API = """
import json, os, subprocess, sys, urllib.request
from ketch.kinds import incluster

me = os.environ["HOSTNAME"]
ic = incluster.load()  # the Pod's KUBECONFIG: server, its ServiceAccount token, ketch's CA
req = urllib.request.Request(f"{ic.server}/api/v1/namespaces/default/pods/{me}", headers=ic.headers)
with urllib.request.urlopen(req, context=ic.ssl_context, timeout=30) as r:
    got = json.load(r)
from ketch.kinds.mounts import bearer
srv = os.environ["KETCH_SERVER"]  # what ketch's in-pod helpers use (metrics push, model downloads, transformers)
with urllib.request.urlopen(urllib.request.Request(f"{srv}/version", headers=bearer()), context=incluster.ssl_context_for(srv), timeout=30) as r:
    version = json.load(r)["gitVersion"]
kc = subprocess.run([sys.argv[1], "get", "pod", me, "-o", "jsonpath={.spec.nodeName}"], capture_output=True, text=True)
print(json.dumps({"env": {k: os.environ[k] for k in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KETCH_SERVER")},
                  "server": ic.server, "api_name": got["metadata"]["name"], "kubectl": [kc.returncode, kc.stdout, kc.stderr[-500:]],
                  "version": version, "ray_node": os.environ["KETCH_RAY_NODE_ID"]}), flush=True)
"""


def test_pods_reach_ketch_at_its_reachable_address_over_tls(k, cluster):
    ip = cluster.head_node.node_ip_address  # the API node's: ketch runs on the head's machine
    if ip.startswith("127."):
        pytest.skip("this machine has no non-loopback address: Pods are given 127.0.0.1, as when ketch listens on loopback")
    pods = []
    for node in ("node-b", "node-c"):  # Pods on nodes other than ketch's own
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"caller-{node}"},
               "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": node},
                        "containers": [{"name": "main", "image": "python:3.11", "command": [sys.executable, "-c", CALL_API, kubectl_bin()]}]}}
        k.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))
        pods.append(pod["metadata"]["name"])
    by_name = nodes(k)
    for name in pods:
        wait_for(lambda n=name: (k.kjson("get", "pod", n).get("status") or {}).get("phase") in ("Succeeded", "Failed"), timeout=60, what=f"{name} done")
        out = k.kubectl("logs", name).stdout
        assert k.kjson("get", "pod", name)["status"]["phase"] == "Succeeded", out
        got = json.loads(out.strip().splitlines()[-1])
        port = str(k.port)
        assert got["env"] == {"KUBERNETES_SERVICE_HOST": ip, "KUBERNETES_SERVICE_PORT": port, "KETCH_SERVER": f"https://{ip}:{port}"}
        assert got["server"] == f"https://{ip}:{port}"  # the kubeconfig names the same address, over TLS
        assert got["api_name"] == name  # the API answered through it, to the Pod's own token, verified by ketch's CA
        node = k.kjson("get", "pod", name)["spec"]["nodeName"]
        assert got["kubectl"] == [0, node, ""] and node == name.removeprefix("caller-")  # and kubectl, the same way
        assert got["version"]  # KETCH_SERVER answered, trusted through the kubeconfig's CA
        assert by_name[node]["metadata"]["labels"]["ray.io/node-id"] == got["ray_node"]
    # the address is not loopback: plain HTTP to it is refused (a token never crosses a network in clear)
    r = httpx.get(f"http://{ip}:{k.port}/healthz", timeout=10)
    assert r.status_code == 400 and r.text == "ketch serves plain HTTP to this machine only: use https\n", r.text
    r = httpx.get(f"https://{ip}:{k.port}/version", headers=k.headers, verify=str(k.home / "tls" / "tls.crt"), timeout=10)
    assert r.status_code == 200, r.text


def test_the_address_pods_are_given_follows_what_ketch_listens_on():
    from ketch.kubelet.ray_nodes import reachable_api_host

    assert reachable_api_host("127.0.0.1", "192.0.2.7") is None  # loopback only: Pods keep 127.0.0.1
    assert reachable_api_host("localhost", "192.0.2.7") is None
    assert reachable_api_host("0.0.0.0", "192.0.2.7") == "192.0.2.7"  # every interface: the API node's IP
    assert reachable_api_host("::", "192.0.2.7") == "192.0.2.7"
    assert reachable_api_host("0.0.0.0", "127.0.0.1") is None  # a machine with no other address
    assert reachable_api_host("10.1.2.3", "192.0.2.7") == "10.1.2.3"  # one address: that one
    assert reachable_api_host("ketch.example.org", "192.0.2.7") == "ketch.example.org"
