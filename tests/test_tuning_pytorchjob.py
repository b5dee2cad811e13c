"""A Katib Experiment whose trials are PyTorchJobs (the shape of Katib's ``pytorchjob-mnist`` example:
``primaryContainerName: pytorch``, Succeeded/Failed conditions), run end to end on a real ketch: the trial
controller creates each PyTorchJob, ``ketch.training`` runs its Master and Worker replicas as real processes
through the local kubelet, and the metric is read from the master's stdout only (the workers print a
decoy value that must not be picked up)."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import make_ketch, wait_for

PY = sys.executable

# Every replica gets RANK from the training operator; only rank 0 (the master) reports the real loss.
TRAIN = (
    "import os, sys; lr = float(sys.argv[1]); rank = int(os.environ['RANK']); "
    "print('loss=%.6f' % ((lr - 0.02) ** 2 * 1e4 if rank == 0 else 1e9), flush=True)"
)


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("tuning-pytorchjob")).start()
    try:
        yield kk
    finally:
        kk.stop()


def replica(n: int, code: str, restart: str) -> dict:
    return {"replicas": n, "restartPolicy": restart, "template": {"spec": {"containers": [{
        "name": "pytorch", "image": "docker.io/kubeflowkatib/pytorch-mnist-cpu",
        "command": [PY, "-c", code, "${trialParameters.learningRate}"]}]}}}


def experiment(name: str, code: str, max_trials: int, max_failed: int, restart: str = "OnFailure") -> str:
    return json.dumps({"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name}, "spec": {
        "objective": {"type": "minimize", "objectiveMetricName": "loss"},
        "algorithm": {"algorithmName": "random", "algorithmSettings": [{"name": "random_state", "value": "3"}]},
        "parallelTrialCount": 2, "maxTrialCount": max_trials, "maxFailedTrialCount": max_failed,
        "parameters": [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.05"}}],
        "trialTemplate": {
            "primaryContainerName": "pytorch",
            "successCondition": 'status.conditions.#(type=="Succeeded")#|#(status=="True")#',
            "failureCondition": 'status.conditions.#(type=="Failed")#|#(status=="True")#',
            "trialParameters": [{"name": "learningRate", "description": "Learning rate", "reference": "lr"}],
            "trialSpec": {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "spec": {"pytorchReplicaSpecs": {
                "Master": replica(1, code, restart), "Worker": replica(2, code, restart)},
                "runPolicy": {"backoffLimit": 0}}},
        },
    }})


def test_pytorchjob_trials_end_to_end(k):
    k.kubectl("apply", "-f", "-", input=experiment("ptj", TRAIN, max_trials=4, max_failed=1))

    def done():
        st = k.kjson("get", "experiment", "ptj").get("status") or {}
        return any(c["type"] == "Succeeded" and c["status"] == "True" for c in st.get("conditions") or []) and st

    st = wait_for(done, timeout=180, what="experiment succeeded")
    assert st["trials"] == 4 and st["trialsSucceeded"] == 4
    trials = k.kjson("get", "trials", "-l", "katib.kubeflow.org/experiment=ptj")["items"]
    assert len(trials) == 4
    best = (None, float("inf"))
    for t in trials:
        assert t["status"]["conditions"][-1]["type"] == "Succeeded"
        lr = float(next(a["value"] for a in t["spec"]["parameterAssignments"] if a["name"] == "lr"))
        assert 0.01 <= lr <= 0.05
        [m] = t["status"]["observation"]["metrics"]
        assert m["name"] == "loss" and abs(float(m["latest"]) - (lr - 0.02) ** 2 * 1e4) < 1e-3, m  # master only
        assert t["spec"]["primaryPodLabels"] == {"training.kubeflow.org/job-role": "master"}
        if float(m["latest"]) < best[1]:
            best = (t["metadata"]["name"], float(m["latest"]))
    assert st["currentOptimalTrial"]["bestTrialName"] == best[0]
    # Each trial's PyTorchJob is deleted once the trial ends (retain is off).
    wait_for(lambda: not k.kjson("get", "pytorchjobs")["items"], what="trial PyTorchJobs deleted")


def test_failed_pytorchjob_fails_the_trial(k):
    k.kubectl("apply", "-f", "-", input=experiment("ptj-bad", "import sys; sys.exit(3)", max_trials=2, max_failed=1, restart="Never"))

    def failed():
        st = k.kjson("get", "experiment", "ptj-bad").get("status") or {}
        return any(c["type"] == "Failed" and c["status"] == "True" for c in st.get("conditions") or []) and st

    st = wait_for(failed, timeout=90, what="experiment failed")
    assert st["trialsFailed"] >= 1
    t = next(t for t in k.kjson("get", "trials", "-l", "katib.kubeflow.org/experiment=ptj-bad")["items"]
             if t["status"]["conditions"][-1]["type"] == "Failed")
    assert t["status"]["conditions"][-1]["reason"].startswith("TrialFailed")
