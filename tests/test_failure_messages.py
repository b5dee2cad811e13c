"""Failures say why: a failed container's termination message (``FallbackToLogsOnError``: the end of its
log), a Job's failure condition naming the Pod, container and exit code, and a Katib Trial's Failed
condition carrying the failed Pod's last output, read before the Trial's run and Pods are deleted."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import make_ketch, wait_for

NOISY = "import sys\nfor i in range(100):\n    print('line', i)\nprint('ValueError: learning rate', sys.argv[1], 'is out of range', file=sys.stderr)\nsys.exit(3)\n"


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("failmsg"), env={"KETCH_JOB_BACKOFF_SECONDS": "0"}).start()
    try:
        yield kk
    finally:
        kk.stop()


def container(policy: str | None = None, arg: str = "0.5") -> dict:
    c = {"name": "main", "image": "python", "command": ["python", "-c", NOISY, arg]}
    if policy:
        c["terminationMessagePolicy"] = policy
    return c


def condition(obj: dict, typ: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == typ and c["status"] == "True"), None)


def test_fallback_to_logs_on_error_is_the_termination_message(k):
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n}, "spec": {"restartPolicy": "Never", "containers": [container(pol)]}}
            for n, pol in (("fallback", "FallbackToLogsOnError"), ("file", None))]
    k.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(pods))
    for n in ("fallback", "file"):
        wait_for(lambda n=n: k.kjson("get", "pod", n)["status"].get("phase") == "Failed", what=f"{n} failed")
    t = k.kjson("get", "pod", "fallback")["status"]["containerStatuses"][0]["state"]["terminated"]
    msg = t["message"]
    assert t["exitCode"] == 3 and msg.endswith("ValueError: learning rate 0.5 is out of range"), msg
    assert len(msg.splitlines()) <= 80 and len(msg.encode()) <= 2048 and "line 99" in msg and "line 0\n" not in msg
    t = k.kjson("get", "pod", "file")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert "message" not in t, t  # policy File: nothing is written to a termination-log here


def test_job_failure_names_pod_exit_code_and_message(k):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "doomed"},
           "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [container("FallbackToLogsOnError")]}}}}
    k.kubectl("apply", "-f", "-", input=json.dumps(job))
    wait_for(lambda: condition(k.kjson("get", "job", "doomed"), "Failed"), what="job failed")
    c = condition(k.kjson("get", "job", "doomed"), "Failed")
    assert c["reason"] == "BackoffLimitExceeded"
    assert c["message"].startswith("Job has reached the specified backoff limit; last failed pod doomed-"), c["message"]
    assert "container main exited with code 3 (Error)" in c["message"] and c["message"].endswith("is out of range")


def experiment(name: str, policy: str | None) -> dict:
    tc = {"name": "training", "image": "python", "command": ["python", "-c", NOISY, "${trialParameters.lr}"]}
    if policy:
        tc["terminationMessagePolicy"] = policy
    return {
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": 1, "maxTrialCount": 1, "maxFailedTrialCount": 0,
            "parameters": [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.1", "max": "0.9"}}],
            "trialTemplate": {
                "primaryContainerName": "training",
                "trialParameters": [{"name": "lr", "reference": "lr"}],
                "trialSpec": {"apiVersion": "batch/v1", "kind": "Job",
                              "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [tc]}}}},
            },
        },
    }


@pytest.mark.parametrize("policy", [None, "FallbackToLogsOnError"])
def test_failed_trial_carries_the_pods_last_output(k, policy):
    name = "crash-" + ("logs" if policy else "file")
    k.kubectl("apply", "-f", "-", input=json.dumps(experiment(name, policy)))
    sel = f"katib.kubeflow.org/experiment={name}"
    wait_for(lambda: any(condition(t, "Failed") for t in k.kjson("get", "trials", "-l", sel)["items"]), timeout=60, what="trial failed")
    (trial,) = k.kjson("get", "trials", "-l", sel)["items"]
    c = condition(trial, "Failed")
    assert c["reason"] == "TrialFailed. Job reason: BackoffLimitExceeded", c
    lr = trial["spec"]["parameterAssignments"][0]["value"]
    assert c["message"].startswith("Trial has failed. Job message: Job has reached the specified backoff limit."), c["message"]
    assert "container training exited with code 3 (Error)" in c["message"]
    assert c["message"].endswith(f"ValueError: learning rate {lr} is out of range"), c["message"]
    assert "line 99" in c["message"] and len(c["message"]) < 2600
    # the run and its Pods are deleted once the Trial is Failed; the message stays
    wait_for(lambda: not k.kjson("get", "jobs", "-l", sel)["items"] and not k.kjson("get", "pods", "-l", sel)["items"], what="run deleted")
    assert condition(k.kjson("get", "trial", trial["metadata"]["name"]), "Failed")["message"] == c["message"]
