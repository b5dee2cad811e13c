"""Real distributed training through ketch's training operators and local kubelet: PyTorch DDP over gloo,
TF_CONFIG peers talking over sockets, XGBoost's collective, a replica killed and restarted by the
restart policy, and a job past its deadline."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_ketch, wait_for

SCRIPTS = Path(__file__).parent / "training_scripts"
PY = sys.executable
# torch is the optional extra `torch` (a CPU build: `pip install torch==2.13.0`); without it these cannot run.
torch = pytest.importorskip("torch", reason="needs the torch extra")


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("training-dist")).start()
    try:
        yield kk
    finally:
        kk.stop()


def replica(cname: str, command: list[str], n: int = 1, policy: str | None = None, env: dict | None = None) -> dict:
    c = {"name": cname, "image": "python:3.11", "command": command, "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    rs = {"replicas": n, "template": {"spec": {"containers": [c]}}}
    if policy:
        rs["restartPolicy"] = policy
    return rs


def create(k, ns: str, obj: dict) -> None:
    k.kubectl("create", "-n", ns, "-f", "-", input=yaml.safe_dump(obj))


def logs(k, ns: str, pod: str) -> str:
    return k.kubectl("logs", pod, "-n", ns).stdout


def cond(k, ns: str, kind: str, name: str, ctype: str) -> dict | None:
    j = k.kjson("get", kind, name, "-n", ns)
    return next((c for c in j.get("status", {}).get("conditions", []) if c["type"] == ctype and c["status"] == "True"), None)


def ns_(k, name: str) -> str:
    k.kubectl("create", "namespace", name)
    return name


@pytest.mark.parametrize("workers", [1, 3])
def test_pytorch_ddp_gloo(k, workers):
    ns = ns_(k, f"ddp{workers}")
    cmd = [PY, str(SCRIPTS / "ddp_train.py")]
    create(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "ddp"},
                   "spec": {"pytorchReplicaSpecs": {"Master": replica("pytorch", cmd), "Worker": replica("pytorch", cmd, workers)}}})
    k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/ddp", "-n", ns, "--timeout=180s", timeout=200)
    world = workers + 1
    pods = ["ddp-master-0"] + [f"ddp-worker-{i}" for i in range(workers)]
    sums = set()
    for rank, pod in enumerate(pods):
        out = logs(k, ns, pod)
        m = re.search(r"rank=(\d+) world=(\d+) first_loss=([\d.]+) last_loss=([\d.]+) in_sync=(\w+) checksum=(\S+)", out)
        assert m, out
        assert int(m.group(1)) == rank and int(m.group(2)) == world
        assert float(m.group(4)) < float(m.group(3)) / 2  # loss falls
        assert m.group(5) == "True"
        sums.add(m.group(6))
    assert len(sums) == 1  # parameters identical on every replica


def test_pytorch_torchrun_reads_pet_env(k):
    ns = ns_(k, "torchrun")
    cmd = [os.path.join(os.path.dirname(PY), "torchrun"), str(SCRIPTS / "ddp_train.py")]
    create(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "tr"},
                   "spec": {"nprocPerNode": "1", "pytorchReplicaSpecs": {"Master": replica("pytorch", cmd), "Worker": replica("pytorch", cmd)}}})
    k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/tr", "-n", ns, "--timeout=180s", timeout=200)
    assert "world=2" in logs(k, ns, "tr-worker-0") and "in_sync=True" in logs(k, ns, "tr-master-0")


def test_tfjob_replicas_talk_over_tf_config(k):
    ns = ns_(k, "tfpeers")
    cmd = [PY, str(SCRIPTS / "tf_config_peers.py")]
    create(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "peers"},
                   "spec": {"tfReplicaSpecs": {"Chief": replica("tensorflow", cmd), "PS": replica("tensorflow", cmd),
                                               "Worker": replica("tensorflow", cmd, 2)}}})
    k.kubectl("wait", "--for=condition=Succeeded", "tfjob/peers", "-n", ns, "--timeout=120s", timeout=140)
    out = logs(k, ns, "peers-chief-0")
    assert "heard: ['hello from ps:0', 'hello from worker:0', 'hello from worker:1']" in out, out
    assert "hello from chief:0" in logs(k, ns, "peers-worker-1")


def test_xgboost_collective_across_workers(k):
    ns = ns_(k, "xgb")
    cmd = [PY, str(SCRIPTS / "xgb_collective.py")]
    create(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "XGBoostJob", "metadata": {"name": "xgb"},
                   "spec": {"xgbReplicaSpecs": {"Master": replica("xgboost", cmd), "Worker": replica("xgboost", cmd, 2)}}})
    k.kubectl("wait", "--for=condition=Succeeded", "xgboostjob/xgb", "-n", ns, "--timeout=120s", timeout=140)
    digests = set()
    for pod in ("xgb-master-0", "xgb-worker-0", "xgb-worker-1"):
        m = re.search(r"world=3 rmse_first=([\d.]+) rmse_last=([\d.]+) model=(\w+)", logs(k, ns, pod))
        assert m and float(m.group(2)) < float(m.group(1))
        digests.add(m.group(3))
    assert len(digests) == 1  # one model, trained together


def test_replica_killed_mid_run_is_restarted_by_policy(k, tmp_path):
    ns = ns_(k, "kill")
    mark = str(tmp_path / "w0")
    master = [PY, "-c", f"import os, time\nwhile not os.path.exists({mark + '.done'!r}): time.sleep(0.1)\nprint('worker came back')"]
    create(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "kk"},
                   "spec": {"pytorchReplicaSpecs": {"Master": replica("pytorch", master, policy="ExitCode"),
                                                    "Worker": replica("pytorch", [PY, str(SCRIPTS / "killable.py"), mark], policy="ExitCode")}}})
    pid = int(wait_for(lambda: os.path.exists(mark + ".pid") and open(mark + ".pid").read(), timeout=60, what="worker pid"))
    os.kill(pid, signal.SIGKILL)  # exit code 137: retryable under ExitCode
    k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/kk", "-n", ns, "--timeout=90s", timeout=100)
    j = k.kjson("get", "pytorchjob", "kk", "-n", ns)
    assert len(j["status"]["restartedPods"]) == 1
    assert "restarted after kill; RANK=1" in logs(k, ns, "kk-worker-0")
    reasons = [e["reason"] for e in k.kjson("get", "events", "-n", ns)["items"]]
    assert "PyTorchJobRestarting" in reasons


def test_job_exceeding_deadline_fails_and_stops_replicas(k):
    ns = ns_(k, "deadline")
    cmd = [PY, "-c", "import time; print('started', flush=True); time.sleep(120)"]
    create(k, ns, {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "slow"},
                   "spec": {"runPolicy": {"activeDeadlineSeconds": 3},
                            "pytorchReplicaSpecs": {"Master": replica("pytorch", cmd), "Worker": replica("pytorch", cmd)}}})
    k.kubectl("wait", "--for=condition=Failed", "pytorchjob/slow", "-n", ns, "--timeout=60s", timeout=70)
    assert cond(k, ns, "pytorchjob", "slow", "Failed")["reason"] == "DeadlineExceeded"
    wait_for(lambda: not k.kjson("get", "pods", "-n", ns)["items"], timeout=60, what="replicas stopped")
