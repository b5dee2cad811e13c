"""Trainer v2 TrainJob completeness, run for real through the local kubelet: the runtime's dataset
initializer runs first (JobSet dependsOn order) and fills the shared /workspace volume the trainer nodes
read; an initializer that cannot fetch its storageUri fails the TrainJob with its reason and no node
starts; node pods start as a gang (all or none)."""

from __future__ import annotations

import pytest
import yaml

from conftest import make_ketch, wait_for

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
