"""Trainer v2 TrainJob completeness, run for real through the local kubelet: the runtime's dataset
initializer runs first (JobSet dependsOn order) and fills the shared /workspace volume the trainer nodes
read; an initializer that cannot fetch its storageUri fails the TrainJob with its reason and no node
starts; node pods start as a gang (all or none)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from conftest import SRC, make_ketch, wait_for

API = "trainer.kubeflow.org/v1alpha1"
INIT_IMAGE = "ghcr.io/kubeflow/trainer/dataset-initializer"


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("trainjob-init")).start()
    try:
        yield kk
    finally:
        kk.stop()


def apply(k, ns: str, obj: dict) -> None:
    k.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(obj))


def setup_ns(k, ns: str) -> None:
    """A namespace with the workspace claim and a TrainingRuntime whose node waits for its dataset initializer."""
    k.kubectl("create", "namespace", ns)
    apply(k, ns, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "workspace"},
                  "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    mount = [{"name": "initializer", "mountPath": "/workspace"}]
    vols = [{"name": "initializer", "persistentVolumeClaim": {"claimName": "workspace"}}]
    apply(k, ns, {"apiVersion": API, "kind": "TrainingRuntime", "metadata": {"name": "with-dataset"},
                  "spec": {"mlPolicy": {"numNodes": 1, "torch": {}}, "template": {"spec": {"replicatedJobs": [
                      {"name": "dataset-initializer",
                       "template": {"metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "dataset-initializer"}},
                                    "spec": {"template": {"spec": {"containers": [
                                        {"name": "dataset-initializer", "image": INIT_IMAGE, "volumeMounts": mount}], "volumes": vols}}}}},
                      {"name": "node", "dependsOn": [{"name": "dataset-initializer", "status": "Complete"}],
                       "template": {"metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                                    "spec": {"template": {"spec": {"containers": [
                                        {"name": "node", "image": "python:3.11", "command": ["false"], "volumeMounts": mount}],
                                        "volumes": vols}}}}}]}}}})


def trainjob(name: str, uri: str, nodes: int = 2, **trainer) -> dict:
    read = "import sys; rows = open(sys.argv[1]).read().split(); print('rows', len(rows), rows[0])"
    return {"apiVersion": API, "kind": "TrainJob", "metadata": {"name": name},
            "spec": {"runtimeRef": {"kind": "TrainingRuntime", "name": "with-dataset"},
                     "initializer": {"dataset": {"storageUri": uri}},
                     "trainer": {"numNodes": nodes, "command": ["python", "-c", read, "/workspace/dataset/train.csv"], **trainer}}}


def cond(k, ns: str, name: str, ctype: str) -> dict | None:
    st = k.kjson("get", "trainjob", name, "-n", ns).get("status") or {}
    return next((c for c in st.get("conditions") or [] if c["type"] == ctype and c["status"] == "True"), None)


def test_dataset_initializer_runs_first_and_nodes_read_it(k, tmp_path):
    data = tmp_path / "iris"
    data.mkdir()
    (data / "train.csv").write_text("a,1\nb,2\nc,3\n")
    ns = "tj-init-ok"
    setup_ns(k, ns)
    apply(k, ns, trainjob("ok", str(data)))
    k.kubectl("wait", "--for=condition=Complete", "trainjob/ok", "-n", ns, "--timeout=90s", timeout=100)
    init = k.kjson("get", "pod", "ok-dataset-initializer-0-0", "-n", ns)
    assert f"{data} -> " in k.kubectl("logs", "ok-dataset-initializer-0-0", "-n", ns).stdout
    finished = init["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
    for i in range(2):
        pod = f"ok-node-0-{i}"
        assert "rows 3 a,1" in k.kubectl("logs", pod, "-n", ns).stdout
        assert k.kjson("get", "pod", pod, "-n", ns)["metadata"]["creationTimestamp"] >= finished  # dependsOn order
    st = {j["name"]: j for j in k.kjson("get", "trainjob", "ok", "-n", ns)["status"]["jobsStatus"]}
    assert st["dataset-initializer"]["succeeded"] == 1 and st["node"]["succeeded"] == 2


def test_failing_initializer_fails_the_trainjob_with_its_reason(k, tmp_path):
    ns = "tj-init-bad"
    setup_ns(k, ns)
    missing = str(tmp_path / "no-such-dataset")
    apply(k, ns, trainjob("bad", missing))
    k.kubectl("wait", "--for=condition=Failed", "trainjob/bad", "-n", ns, "--timeout=60s", timeout=70)
    c = cond(k, ns, "bad", "Failed")
    assert c["reason"] == "DatasetInitializerFailed", c
    assert missing in c["message"] and "bad-dataset-initializer-0-0" in c["message"], c
    assert f"{missing} does not exist" in k.kubectl("logs", "bad-dataset-initializer-0-0", "-n", ns).stdout + \
        k.kubectl("logs", "bad-dataset-initializer-0-0", "-n", ns).stderr
    assert not cond(k, ns, "bad", "Complete")
    names = [p["metadata"]["name"] for p in k.kjson("get", "pods", "-n", ns)["items"]]
    assert names == ["bad-dataset-initializer-0-0"], names  # no trainer node was started


def test_trainjob_nodes_start_as_a_gang(k, tmp_path):
    ns = "tj-gang"
    setup_ns(k, ns)
    (tmp_path / "train.csv").write_text("x\n")
    node = k.kjson("get", "nodes")["items"][0]
    cpus = float(node["status"]["allocatable"]["cpu"])
    apply(k, ns, trainjob("big", str(tmp_path), nodes=int(cpus) + 1, resourcesPerNode={"requests": {"cpu": "1"}}))
    wait_for(lambda: any(e["reason"] == "GangNotAdmitted" for e in k.kjson("get", "events", "-n", ns)["items"]),
             timeout=60, what="GangNotAdmitted")
    names = [p["metadata"]["name"] for p in k.kjson("get", "pods", "-n", ns)["items"]]
    assert not [n for n in names if "-node-" in n], names  # none of the nodes started while all cannot
    k.kubectl("delete", "trainjob", "big", "-n", ns)


def _initializer(dest, uri: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The initializer as a TrainJob's Pod runs it: its own process, STORAGE_URI in the environment."""
    e = {**os.environ, "PYTHONPATH": str(SRC), "STORAGE_URI": uri, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ketch.training.initializers", "dataset", str(dest)], env=e,
                          capture_output=True, text=True, timeout=60)


def test_initializer_fetches_an_s3_prefix_and_an_http_file(tmp_path, s3, http_server):
    """The s3:// and http(s):// schemes against real servers on loopback (moto's S3, an HTTP file server)."""
    import boto3

    b = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test")
    b.create_bucket(Bucket="data")
    for key in ("train/a.csv", "train/sub/b.csv", "trainer/not-this.csv"):  # a sibling prefix stays out
        b.put_object(Bucket="data", Key=key, Body=key.encode())
    (tmp_path / "ws").mkdir()
    r = _initializer(tmp_path / "ws" / "dataset", "s3://data/train", s3)
    assert r.returncode == 0 and "(2 files)" in r.stdout, r.stdout + r.stderr
    got = sorted(str(p.relative_to(tmp_path / "ws" / "dataset")) for p in (tmp_path / "ws" / "dataset").rglob("*") if p.is_file())
    assert got == ["a.csv", "sub/b.csv"] and (tmp_path / "ws" / "dataset" / "sub" / "b.csv").read_text() == "train/sub/b.csv"
    r = _initializer(tmp_path / "ws" / "empty", "s3://data/none", s3)
    assert r.returncode == 1 and "no objects under s3://data/none" in r.stderr, r.stderr
    assert not (tmp_path / "ws" / "empty").exists()  # nothing half-written
    root, url = http_server
    (root / "train.csv").write_text("x,1\n")
    r = _initializer(tmp_path / "ws" / "web", f"{url}/train.csv")
    assert r.returncode == 0 and (tmp_path / "ws" / "web" / "train.csv").read_text() == "x,1\n", r.stderr
    r = _initializer(tmp_path / "ws" / "gone", f"{url}/missing.csv")
    assert r.returncode == 1 and f"GET {url}/missing.csv: HTTP 404" in r.stderr, r.stderr
