"""Jobs, Services and Katib Experiments with the local kubelet running real processes, through kubectl."""

from __future__ import annotations

import json

import pytest

from conftest import make_ketch, wait_for


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory):
    kk = make_ketch(tmp_path_factory.mktemp("e2e"), env={"KETCH_JOB_BACKOFF_SECONDS": "0.1"}).start()
    try:
        yield kk
    finally:
        kk.stop()


def job(name: str, code: str, **spec) -> str:
    return json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "python", "command": ["python", "-c", code]}]}}, **spec},
    })


def test_indexed_job_runs_real_processes(k):
    ns = "ix"
    k.kubectl("create", "namespace", ns)
    # index 1 fails on its first attempt (a marker file tells the retry apart), the others succeed
    code = ("import os,sys,tempfile; i=os.environ['JOB_COMPLETION_INDEX']; print('hello from index', i);"
            "m=os.path.join(tempfile.gettempdir(), 'ketch-ix-' + os.environ['HOSTNAME_MARK']);"
            "first = i == '1' and not os.path.exists(m); open(m, 'w').close() if first else None; sys.exit(3 if first else 0)")
    body = json.loads(job("ix", code, completions=3, parallelism=3, completionMode="Indexed", backoffLimit=2))
    import uuid

    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "HOSTNAME_MARK", "value": uuid.uuid4().hex}]
    k.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(body))
    r = k.kubectl("wait", "-n", ns, "--for=condition=Complete", "job/ix", "--timeout=90s", timeout=100)
    assert "condition met" in r.stdout
    j = k.kjson("get", "job", "ix", "-n", ns)
    assert j["status"]["succeeded"] == 3 and j["status"]["failed"] == 1 and j["status"]["completedIndexes"] == "0-2"
    pods = k.kjson("get", "pods", "-n", ns, "-l", "job-name=ix")["items"]
    assert sorted(p["status"]["phase"] for p in pods) == ["Failed", "Succeeded", "Succeeded", "Succeeded"]
    for p in pods:
        idx = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        assert f"hello from index {idx}" in k.kubectl("logs", "-n", ns, p["metadata"]["name"]).stdout
    assert "hello from index" in k.kubectl("logs", "-n", ns, "job/ix").stdout


def test_backoff_limit_with_real_failures(k):
    ns = "bo"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-n", ns, "-f", "-", input=job("bad", "import sys; print('boom'); sys.exit(2)", backoffLimit=1))
    r = k.kubectl("wait", "-n", ns, "--for=condition=Failed", "job/bad", "--timeout=90s", timeout=100)
    assert "condition met" in r.stdout
    j = k.kjson("get", "job", "bad", "-n", ns)
    assert j["status"]["failed"] == 2
    assert next(c for c in j["status"]["conditions"] if c["type"] == "Failed")["reason"] == "BackoffLimitExceeded"
    assert "boom" in k.kubectl("logs", "-n", ns, "job/bad").stdout


BRANIN = """
import math, sys
a = dict(x.lstrip('-').split('=') for x in sys.argv[1:])
x1, x2 = float(a['x1']), float(a['x2'])
v = (x2 - 5.1/(4*math.pi**2)*x1**2 + 5/math.pi*x1 - 6)**2 + 10*(1 - 1/(8*math.pi))*math.cos(x1) + 10
"""


def experiment(name: str, algorithm: str, report: str, collector: str, budget: int) -> str:
    return json.dumps({
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": algorithm, "algorithmSettings": [{"name": "random_state", "value": "3"}]},
            "parallelTrialCount": 2, "maxTrialCount": budget,
            "metricsCollectorSpec": {"collector": {"kind": collector}},
            "parameters": [
                {"name": "x1", "parameterType": "double", "feasibleSpace": {"min": "-5", "max": "10"}},
                {"name": "x2", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "15"}},
            ],
            "trialTemplate": {
                "primaryContainerName": "training",
                "trialParameters": [{"name": "x1", "reference": "x1"}, {"name": "x2", "reference": "x2"}],
                "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "training", "image": "python", "command": ["python", "-c", BRANIN + report,
                                                                                           "--x1=${trialParameters.x1}", "--x2=${trialParameters.x2}"]}]}}}},
            },
        },
    })


@pytest.mark.parametrize("collector,report", [
    ("StdOut", "print('epoch 1'); print(f'loss={v}')"),
    ("Push", "from ketch.tuning import report; report(loss=v)"),
])
def test_experiment_with_real_trial_processes(k, collector, report):
    ns = f"exp-{collector.lower()}"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-n", ns, "-f", "-", input=experiment("br", "random", report, collector, 6))
    e = wait_for(lambda: (x := k.kjson("get", "experiment", "br", "-n", ns)) and any(
        c["type"] == "Succeeded" and c["status"] == "True" for c in x.get("status", {}).get("conditions", [])) and x, timeout=120, what="experiment done")
    assert e["status"]["trialsSucceeded"] == 6
    best = e["status"]["currentOptimalTrial"]
    a = {p["name"]: float(p["value"]) for p in best["parameterAssignments"]}
    import math

    x1, x2 = a["x1"], a["x2"]
    expect = (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10
    assert float(best["observation"]["metrics"][0]["latest"]) == pytest.approx(expect)
    # runs are deleted once the trial is done (retain: false); the trial keeps the observation
    wait_for(lambda: k.kjson("get", "jobs", "-n", ns)["items"] == [], what="trial jobs cleaned up")


def test_deadline_kills_running_pod(k):
    ns = "dl"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-n", ns, "-f", "-", input=job("slow", "import time; print('start', flush=True); time.sleep(60)", activeDeadlineSeconds=2))
    r = k.kubectl("wait", "-n", ns, "--for=condition=Failed", "job/slow", "--timeout=60s", timeout=70)
    assert "condition met" in r.stdout
    j = k.kjson("get", "job", "slow", "-n", ns)
    assert next(c for c in j["status"]["conditions"] if c["type"] == "Failed")["reason"] == "DeadlineExceeded"
    wait_for(lambda: k.kjson("get", "pods", "-n", ns)["items"] == [], what="pod stopped and removed")


SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(os.environ['NAME'].encode())
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""


def test_service_endpoints_reach_a_real_pod(k):
    import socket

    import httpx

    ns = "svc"
    k.kubectl("create", "namespace", ns)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "master-0", "labels": {"app": "m"}}, "spec": {"containers": [{
        "name": "main", "image": "python", "command": ["python", "-c", SERVER], "env": [{"name": "NAME", "value": "master-0"}, {"name": "PORT", "value": str(port)}],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}}]}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "master"}, "spec": {"selector": {"app": "m"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    k.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(svc))
    k.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(pod))
    from ketch.kinds.endpoints import endpoint_addresses

    addrs = wait_for(lambda: endpoint_addresses(k.kjson("get", "endpoints", "master", "-n", ns), "http"), timeout=60, what="ready endpoint")
    host, p = addrs[0]
    assert (host, p) == ("127.0.0.1", port)
    assert httpx.get(f"http://{host}:{p}/").text == "master-0"
    k.kubectl("delete", "pod", "master-0", "-n", ns)
    wait_for(lambda: not endpoint_addresses(k.kjson("get", "endpoints", "master", "-n", ns), "http"), timeout=60, what="endpoint removed")
