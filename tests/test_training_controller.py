"""Training operator logic against a real ketch server with the kubelet left out: the test plays the
kubelet by writing Pod status through the API, so every lifecycle rule is checked deterministically."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import make_ketch, wait_for

MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("training"), env={"KETCH_DISABLE": "kubelet"}).start()
    try:
        yield kk
    finally:
        kk.stop()


def container(name: str, **extra) -> dict:
    return {"name": name, "image": "python:3.11", "command": ["python", "-c", "pass"], **extra}


def pytorchjob(name: str, workers: int = 2, master: bool = True, **spec) -> dict:
    rs = {}
    if master:
        rs["Master"] = {"replicas": 1, "template": {"spec": {"containers": [container("pytorch")]}}}
    if workers:
        rs["Worker"] = {"replicas": workers, "template": {"spec": {"containers": [container("pytorch")]}}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": rs, **spec}}


def apply(k, ns: str, obj: dict, check: bool = True):
    return k.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump(obj), check=check)


def ns_(k, name: str) -> str:
    k.kubectl("create", "namespace", name)
    return name


def pods(k, ns: str, job: str) -> dict[str, dict]:
    items = k.kjson("get", "pods", "-n", ns, "-l", f"training.kubeflow.org/job-name={job}")["items"]
    return {p["metadata"]["name"]: p for p in items}


def set_phase(k, ns: str, pod: str, phase: str, code: int | None = None, restarts: int = 0) -> None:
    cs = {"name": "pytorch", "ready": phase == "Running", "restartCount": restarts, "image": "x", "imageID": "", "state": {}}
    if phase == "Running":
        cs["state"] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    elif code is not None:
        cs["state"] = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
    with k.http() as h:
        p = h.get(f"/api/v1/namespaces/{ns}/pods/{pod}").json()
        cs["name"] = p["spec"]["containers"][0]["name"]
        r = h.patch(f"/api/v1/namespaces/{ns}/pods/{pod}/status", headers=MERGE,
                    content=json.dumps({"status": {"phase": phase, "podIP": "127.0.0.1", "containerStatuses": [cs]}}))
        assert r.status_code == 200, r.text


def job(k, ns: str, kind: str, name: str) -> dict:
    return k.kjson("get", kind, name, "-n", ns)


def cond(obj: dict, ctype: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype and c["status"] == "True"), None)


def envmap(pod: dict, cname: str | None = None) -> dict[str, str]:
    c = next(c for c in pod["spec"]["containers"] if cname is None or c["name"] == cname)
    return {e["name"]: e.get("value") for e in c.get("env") or []}


def test_crds_installed_with_printer_columns(k):
    names = k.kubectl("get", "crd", "-o", "name").stdout
    for plural in ("pytorchjobs.kubeflow.org", "tfjobs.kubeflow.org", "xgboostjobs.kubeflow.org", "jaxjobs.kubeflow.org",
                   "trainjobs.trainer.kubeflow.org", "trainingruntimes.trainer.kubeflow.org", "clustertrainingruntimes.trainer.kubeflow.org"):
        assert plural in names
    rts = k.kubectl("get", "clustertrainingruntimes").stdout
    assert "torch-distributed" in rts and "python-distributed" in rts


@pytest.mark.parametrize("obj,needle", [
    (pytorchjob("two-masters") | {"spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 2, "template": {"spec": {"containers": [container("pytorch")]}}}}}},
     "PyTorchJob Master replicas must be 1"),
    ({"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "chief-and-master"}, "spec": {"tfReplicaSpecs": {
        "Chief": {"template": {"spec": {"containers": [container("tensorflow")]}}},
        "Master": {"template": {"spec": {"containers": [container("tensorflow")]}}}}}}, "Chief and Master cannot both be set"),
    ({"apiVersion": "kubeflow.org/v1", "kind": "XGBoostJob", "metadata": {"name": "no-master"}, "spec": {"xgbReplicaSpecs": {
        "Worker": {"replicas": 2, "template": {"spec": {"containers": [container("xgboost")]}}}}}}, "XGBoostJob requires a Master replica"),
    (pytorchjob("bad-policy") | {"spec": {"pytorchReplicaSpecs": {"Worker": {"restartPolicy": "Sometimes", "template": {"spec": {"containers": [container("pytorch")]}}}}}},
     'Unsupported value: "Sometimes"'),
    (pytorchjob("bad-type") | {"spec": {"pytorchReplicaSpecs": {"Launcher": {"template": {"spec": {"containers": [container("pytorch")]}}}}}},
     "unsupported replica type 'Launcher'"),
    (pytorchjob("no-container") | {"spec": {"pytorchReplicaSpecs": {"Worker": {"template": {"spec": {"containers": [container("main")]}}}}}},
     "there is no container named 'pytorch'"),
    (pytorchjob("conflict") | {"spec": {"pytorchReplicaSpecs": {"Worker": {"restartPolicy": "OnFailure", "template": {"spec": {"restartPolicy": "Never", "containers": [container("pytorch")]}}}}}},
     "conflicts with spec.pytorchReplicaSpecs.Worker.restartPolicy"),
    (pytorchjob("elastic-bad", master=False) | {"spec": {"elasticPolicy": {"minReplicas": 3, "maxReplicas": 2},
                                                         "pytorchReplicaSpecs": {"Worker": {"replicas": 2, "template": {"spec": {"containers": [container("pytorch")]}}}}}},
     "must not be greater than maxReplicas"),
])
def test_bad_input_refused_with_clear_message(k, obj, needle):
    r = apply(k, "default", obj, check=False)
    assert r.returncode != 0
    assert needle in r.stderr, r.stderr
    assert k.kubectl("get", obj["kind"].lower(), obj["metadata"]["name"], check=False).returncode != 0  # nothing stored


def test_pytorchjob_wiring_conditions_and_kubectl_wait(k):
    ns = ns_(k, "pt")
    apply(k, ns, pytorchjob("mnist", workers=2))
    ps = wait_for(lambda: (p := pods(k, ns, "mnist")) and len(p) == 3 and p, what="3 pods")
    svcs = {s["metadata"]["name"]: s for s in k.kjson("get", "services", "-n", ns)["items"]}
    assert set(svcs) == {"mnist-master-0", "mnist-worker-0", "mnist-worker-1"}
    mport = str(svcs["mnist-master-0"]["spec"]["ports"][0]["port"])
    for name, rank in (("mnist-master-0", "0"), ("mnist-worker-0", "1"), ("mnist-worker-1", "2")):
        e = envmap(ps[name])
        assert e["MASTER_ADDR"] == "127.0.0.1" and e["MASTER_PORT"] == mport == e["PET_MASTER_PORT"]
        assert e["WORLD_SIZE"] == "3" and e["RANK"] == rank == e["PET_NODE_RANK"]
        assert e["PET_NNODES"] == "3" and e["PET_NPROC_PER_NODE"] == "auto" and e["PYTHONUNBUFFERED"] == "1"
        lab = ps[name]["metadata"]["labels"]
        assert lab["training.kubeflow.org/job-name"] == "mnist"
        assert lab["training.kubeflow.org/operator-name"] == "pytorchjob-controller"
        assert ps[name]["metadata"]["ownerReferences"][0]["kind"] == "PyTorchJob"
        assert ps[name]["spec"]["restartPolicy"] == "OnFailure"
    assert ps["mnist-master-0"]["metadata"]["labels"]["training.kubeflow.org/job-role"] == "master"
    assert "training.kubeflow.org/job-role" not in ps["mnist-worker-0"]["metadata"]["labels"]
    assert cond(job(k, ns, "pytorchjob", "mnist"), "Created")["reason"] == "PyTorchJobCreated"
    for n in ps:
        set_phase(k, ns, n, "Running")
    wait_for(lambda: cond(job(k, ns, "pytorchjob", "mnist"), "Running"), what="Running")
    j = job(k, ns, "pytorchjob", "mnist")
    assert j["status"]["replicaStatuses"]["Worker"]["active"] == 2 and j["status"]["startTime"]
    assert "STATE" in (out := k.kubectl("get", "pytorchjobs", "-n", ns).stdout) and "Running" in out
    set_phase(k, ns, "mnist-master-0", "Succeeded", 0)
    k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/mnist", "-n", ns, "--timeout=20s")
    j = job(k, ns, "pytorchjob", "mnist")
    assert j["status"]["conditions"][-1]["type"] == "Succeeded"
    assert not cond(j, "Running") and j["status"]["completionTime"]
    assert "Succeeded" in k.kubectl("get", "pytorchjobs", "-n", ns).stdout
    reasons = {e["reason"] for e in k.kjson("get", "events", "-n", ns)["items"]}
    assert {"PyTorchJobCreated", "SuccessfulCreatePod", "SuccessfulCreateService", "PyTorchJobSucceeded"} <= reasons


def test_tfjob_tf_config_has_distinct_real_ports_across_jobs(k):
    ns = ns_(k, "tf")
    for name in ("a", "b"):
        apply(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": name}, "spec": {"tfReplicaSpecs": {
            "PS": {"replicas": 1, "template": {"spec": {"containers": [container("tensorflow")]}}},
            "Worker": {"replicas": 2, "template": {"spec": {"containers": [container("tensorflow"), container("sidecar")]}}}}}})
    allp = wait_for(lambda: (p := k.kjson("get", "pods", "-n", ns)["items"]) and len(p) == 6 and p, what="6 pods")
    ports = set()
    for p in allp:
        cfg = json.loads(envmap(p, "tensorflow")["TF_CONFIG"])
        assert "TF_CONFIG" not in envmap(p, "sidecar") if len(p["spec"]["containers"]) > 1 else True
        assert set(cfg["cluster"]) == {"ps", "worker"} and cfg["environment"] == "cloud"
        lab = p["metadata"]["labels"]
        assert cfg["task"] == {"type": lab["training.kubeflow.org/replica-type"], "index": int(lab["training.kubeflow.org/replica-index"])}
        me = cfg["cluster"][cfg["task"]["type"]][cfg["task"]["index"]]
        assert me.startswith("127.0.0.1:")
        ports.add(me)
    assert len(ports) == 6  # every replica of every job has its own address
    # Default success policy: worker 0 done (no chief) finishes the job.
    w0 = "a-worker-0"
    set_phase(k, ns, w0, "Succeeded", 0)
    k.kubectl("wait", "--for=condition=Succeeded", "tfjob/a", "-n", ns, "--timeout=20s")


def test_exitcode_policy_retries_retryable_and_fails_permanent(k):
    ns = ns_(k, "exitcode")
    obj = pytorchjob("ec", workers=1)
    for rs in obj["spec"]["pytorchReplicaSpecs"].values():
        rs["restartPolicy"] = "ExitCode"
    apply(k, ns, obj)
    ps = wait_for(lambda: (p := pods(k, ns, "ec")) and len(p) == 2 and p, what="pods")
    assert ps["ec-worker-0"]["spec"]["restartPolicy"] == "Never"
    old_uid = ps["ec-worker-0"]["metadata"]["uid"]
    set_phase(k, ns, "ec-worker-0", "Failed", 137)  # SIGKILL: retryable
    new = wait_for(lambda: (p := pods(k, ns, "ec").get("ec-worker-0")) and p["metadata"]["uid"] != old_uid and p, what="recreated pod")
    assert envmap(new)["RANK"] == "1"
    j = job(k, ns, "pytorchjob", "ec")
    assert cond(j, "Restarting") and "ec-worker-0" in cond(j, "Restarting")["message"]
    assert len(j["status"]["restartedPods"]) == 1
    set_phase(k, ns, "ec-worker-0", "Running")
    set_phase(k, ns, "ec-master-0", "Running")
    wait_for(lambda: cond(job(k, ns, "pytorchjob", "ec"), "Running"), what="Running again")
    set_phase(k, ns, "ec-worker-0", "Failed", 1)  # permanent
    k.kubectl("wait", "--for=condition=Failed", "pytorchjob/ec", "-n", ns, "--timeout=20s")
    c = cond(job(k, ns, "pytorchjob", "ec"), "Failed")
    assert c["reason"] == "PyTorchJobFailed" and "exit code 1" in c["message"]


def test_never_policy_fails_job_and_cleanpodpolicy_running_stops_the_rest(k):
    ns = ns_(k, "never")
    obj = pytorchjob("nv", workers=2, runPolicy={"cleanPodPolicy": "Running"})
    obj["spec"]["pytorchReplicaSpecs"]["Worker"]["restartPolicy"] = "Never"
    apply(k, ns, obj)
    wait_for(lambda: len(pods(k, ns, "nv")) == 3, what="pods")
    set_phase(k, ns, "nv-worker-1", "Failed", 2)
    k.kubectl("wait", "--for=condition=Failed", "pytorchjob/nv", "-n", ns, "--timeout=20s")
    left = wait_for(lambda: (p := pods(k, ns, "nv")) is not None and list(p) == ["nv-worker-1"] and p, what="running pods deleted")
    assert list(left) == ["nv-worker-1"]


def test_backoff_limit(k):
    ns = ns_(k, "backoff")
    apply(k, ns, pytorchjob("bo", workers=1, runPolicy={"backoffLimit": 2}))
    wait_for(lambda: len(pods(k, ns, "bo")) == 2, what="pods")
    set_phase(k, ns, "bo-worker-0", "Running", restarts=1)
    import time
    time.sleep(0.5)
    assert not cond(job(k, ns, "pytorchjob", "bo"), "Failed")
    set_phase(k, ns, "bo-worker-0", "Running", restarts=2)
    k.kubectl("wait", "--for=condition=Failed", "pytorchjob/bo", "-n", ns, "--timeout=20s")
    assert cond(job(k, ns, "pytorchjob", "bo"), "Failed")["reason"] == "BackoffLimitExceeded"


def test_active_deadline_fails_job(k):
    ns = ns_(k, "deadline")
    apply(k, ns, pytorchjob("dl", workers=1, runPolicy={"activeDeadlineSeconds": 4}))
    wait_for(lambda: len(pods(k, ns, "dl")) == 2, what="pods")  # well inside the 4 s deadline, even on a loaded machine
    k.kubectl("wait", "--for=condition=Failed", "pytorchjob/dl", "-n", ns, "--timeout=20s")
    c = cond(job(k, ns, "pytorchjob", "dl"), "Failed")
    assert c["reason"] == "DeadlineExceeded" and "deadline" in c["message"]
    wait_for(lambda: not pods(k, ns, "dl"), what="pods stopped")


def test_suspend_and_resume(k):
    ns = ns_(k, "suspend")
    apply(k, ns, pytorchjob("sr", workers=1))
    wait_for(lambda: len(pods(k, ns, "sr")) == 2, what="pods")
    k.kubectl("patch", "pytorchjob", "sr", "-n", ns, "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":true}}}')
    wait_for(lambda: cond(job(k, ns, "pytorchjob", "sr"), "Suspended"), what="Suspended")
    wait_for(lambda: not pods(k, ns, "sr"), what="pods deleted")
    assert cond(job(k, ns, "pytorchjob", "sr"), "Suspended")["reason"] == "PyTorchJobSuspended"
    k.kubectl("patch", "pytorchjob", "sr", "-n", ns, "--type=merge", "-p", '{"spec":{"runPolicy":{"suspend":false}}}')
    wait_for(lambda: len(pods(k, ns, "sr")) == 2, what="pods back")
    j = job(k, ns, "pytorchjob", "sr")
    assert not cond(j, "Suspended")
    assert any(c["type"] == "Suspended" and c["reason"] == "PyTorchJobResumed" for c in j["status"]["conditions"])


def test_gang_admission_all_or_nothing(k):
    ns = ns_(k, "gang")
    k.kubectl("create", "-f", "-", input=yaml.safe_dump({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gang-node"}}))
    with k.http() as h:
        r = h.patch("/api/v1/nodes/gang-node/status", headers=MERGE, content=json.dumps(
            {"status": {"capacity": {"cpu": "2", "memory": "8Gi"}, "allocatable": {"cpu": "2", "memory": "8Gi"}}}))
        assert r.status_code == 200, r.text
    try:
        big = pytorchjob("big", workers=2)
        for rs in big["spec"]["pytorchReplicaSpecs"].values():
            rs["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
        apply(k, ns, big)  # 3 cpus needed, 2 allocatable
        wait_for(lambda: any(e["reason"] == "GangNotAdmitted" for e in k.kjson("get", "events", "-n", ns)["items"]), what="GangNotAdmitted")
        assert pods(k, ns, "big") == {}
        small = pytorchjob("small", workers=1)
        for rs in small["spec"]["pytorchReplicaSpecs"].values():
            rs["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
        apply(k, ns, small)
        wait_for(lambda: len(pods(k, ns, "small")) == 2, what="small job admitted whole")
        assert pods(k, ns, "big") == {}
    finally:
        k.kubectl("delete", "node", "gang-node")


def test_ttl_and_clean_all(k):
    ns = ns_(k, "ttl")
    apply(k, ns, pytorchjob("tt", workers=1, runPolicy={"ttlSecondsAfterFinished": 1, "cleanPodPolicy": "All"}))
    wait_for(lambda: len(pods(k, ns, "tt")) == 2, what="pods")
    set_phase(k, ns, "tt-master-0", "Succeeded", 0)
    wait_for(lambda: k.kubectl("get", "pytorchjob", "tt", "-n", ns, check=False).returncode != 0, what="job deleted by TTL")
    wait_for(lambda: not pods(k, ns, "tt"), what="pods gone")


def test_xgboost_and_jax_env(k):
    ns = ns_(k, "xj")
    apply(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "XGBoostJob", "metadata": {"name": "xg"}, "spec": {"xgbReplicaSpecs": {
        "Master": {"template": {"spec": {"containers": [container("xgboost")]}}},
        "Worker": {"replicas": 2, "template": {"spec": {"containers": [container("xgboost")]}}}}}})
    apply(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "JAXJob", "metadata": {"name": "jx"}, "spec": {"jaxReplicaSpecs": {
        "worker": {"replicas": 2, "template": {"spec": {"containers": [container("jax")]}}}}}})
    xp = wait_for(lambda: (p := pods(k, ns, "xg")) and len(p) == 3 and p, what="xgb pods")
    svc = k.kjson("get", "service", "xg-master-0", "-n", ns)["spec"]["ports"][0]["port"]
    e = envmap(xp["xg-worker-1"])
    assert e["MASTER_ADDR"] == "127.0.0.1" and e["MASTER_PORT"] == str(svc)
    assert e["WORLD_SIZE"] == "3" and e["RANK"] == "2" and e["WORKER_ADDRS"] == "127.0.0.1,127.0.0.1"
    jp = wait_for(lambda: (p := pods(k, ns, "jx")) and len(p) == 2 and p, what="jax pods")
    e = envmap(jp["jx-worker-1"])
    assert e["COORDINATOR_ADDRESS"] == "127.0.0.1" and e["NUM_PROCESSES"] == "2" and e["PROCESS_ID"] == "1"
    assert e["COORDINATOR_PORT"] == str(k.kjson("get", "service", "jx-worker-0", "-n", ns)["spec"]["ports"][0]["port"])
    assert jp["jx-worker-0"]["metadata"]["labels"]["training.kubeflow.org/replica-type"] == "worker"


def test_trainjob_renders_jobset_pods_with_torch_env(k):
    ns = ns_(k, "tj")
    apply(k, ns, {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "tj1"},
                  "spec": {"runtimeRef": {"name": "torch-distributed"},
                           "trainer": {"numNodes": 2, "command": ["torchrun", "train.py"], "env": [{"name": "FOO", "value": "bar"}],
                                       "resourcesPerNode": {"requests": {"cpu": "1"}}}}})
    sel = "jobset.sigs.k8s.io/jobset-name=tj1"
    ps = wait_for(lambda: (p := k.kjson("get", "pods", "-n", ns, "-l", sel)["items"]) and len(p) == 2 and p, what="node pods")
    byname = {p["metadata"]["name"]: p for p in ps}
    assert set(byname) == {"tj1-node-0-0", "tj1-node-0-1"}
    e = envmap(byname["tj1-node-0-1"], "node")
    assert e["PET_NNODES"] == "2" and e["PET_NODE_RANK"] == "1" and e["PET_MASTER_ADDR"] == "127.0.0.1"
    assert e["PET_NPROC_PER_NODE"] == "1" and e["FOO"] == "bar" and int(e["PET_MASTER_PORT"]) > 0
    assert byname["tj1-node-0-1"]["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1"
    for n in byname:
        set_phase(k, ns, n, "Succeeded", 0)
    k.kubectl("wait", "--for=condition=Complete", "trainjob/tj1", "-n", ns, "--timeout=20s")
    assert job(k, ns, "trainjob", "tj1")["status"]["jobsStatus"][0]["succeeded"] == 2
    apply(k, ns, {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "tj2"},
                  "spec": {"runtimeRef": {"name": "no-such-runtime"}}})
    k.kubectl("wait", "--for=condition=Failed", "trainjob/tj2", "-n", ns, "--timeout=20s")


def test_pytorch_elastic_env_and_success_on_any_worker(k):
    ns = ns_(k, "elastic")
    obj = pytorchjob("el", workers=2, master=False, elasticPolicy={"minReplicas": 1, "maxReplicas": 3, "maxRestarts": 2, "rdzvId": "r1"})
    apply(k, ns, obj)
    ps = wait_for(lambda: (p := pods(k, ns, "el")) and len(p) == 2 and p, what="pods")
    port = k.kjson("get", "service", "el-worker-0", "-n", ns)["spec"]["ports"][0]["port"]
    e = envmap(ps["el-worker-1"])
    assert e["PET_RDZV_ENDPOINT"] == f"127.0.0.1:{port}" and e["PET_RDZV_BACKEND"] == "c10d"
    assert e["PET_NNODES"] == "1:3" and e["PET_MAX_RESTARTS"] == "2" and e["PET_RDZV_ID"] == "r1"
    assert "MASTER_ADDR" not in e
    assert ps["el-worker-0"]["metadata"]["labels"]["training.kubeflow.org/job-role"] == "master"
    set_phase(k, ns, "el-worker-1", "Succeeded", 0)
    k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/el", "-n", ns, "--timeout=20s")


def test_restart_of_ketch_keeps_ports_and_pods(tmp_path):
    kk = make_ketch(tmp_path, env={"KETCH_DISABLE": "kubelet"}).start()
    try:
        apply(kk, "default", pytorchjob("rs", workers=1))
        before = wait_for(lambda: (p := pods(kk, "default", "rs")) and len(p) == 2 and p, what="pods")
        kk.kill9()
        kk.start()
        set_phase(kk, "default", "rs-master-0", "Running")
        wait_for(lambda: cond(job(kk, "default", "pytorchjob", "rs"), "Running"), what="Running after restart")
        after = pods(kk, "default", "rs")
        assert {n: p["metadata"]["uid"] for n, p in after.items()} == {n: p["metadata"]["uid"] for n, p in before.items()}
        assert envmap(after["rs-worker-0"])["MASTER_PORT"] == envmap(before["rs-worker-0"])["MASTER_PORT"]
    finally:
        kk.stop()


def test_trainjob_suspend_and_deadline(k):
    ns = ns_(k, "tjlife")
    tj = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "s1"},
          "spec": {"runtimeRef": {"name": "torch-distributed"}, "suspend": True, "trainer": {"numNodes": 2, "command": ["true"]}}}
    apply(k, ns, tj)
    wait_for(lambda: cond(job(k, ns, "trainjob", "s1"), "Suspended"), what="Suspended")
    assert not k.kjson("get", "pods", "-n", ns)["items"]
    k.kubectl("patch", "trainjob", "s1", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_for(lambda: len(k.kjson("get", "pods", "-n", ns)["items"]) == 2, what="pods after resume")
    tj["metadata"]["name"] = "d1"
    tj["spec"] = {**tj["spec"], "suspend": False, "activeDeadlineSeconds": 1}
    apply(k, ns, tj)
    k.kubectl("wait", "--for=condition=Failed", "trainjob/d1", "-n", ns, "--timeout=20s")
    assert cond(job(k, ns, "trainjob", "d1"), "Failed")["reason"] == "DeadlineExceeded"
