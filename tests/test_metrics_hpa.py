"""metrics.k8s.io from the kubelet's samples (``kubectl top pods|nodes``) and a HorizontalPodAutoscaler made
by ``kubectl autoscale`` that scales a Deployment out under a CPU load and back in when it stops."""

from __future__ import annotations

import json

import pytest

from conftest import make_ketch, wait_for

LOAD = """
import os, time
f = os.environ["LOAD_FILE"]
while True:
    if os.path.exists(f):
        t = time.time()
        while time.time() - t < 0.1:
            pass
    else:
        time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    k = make_ketch(tmp_path_factory.mktemp("hpa"), env={"KETCH_METRICS_INTERVAL": "0.5", "KETCH_HPA_SYNC_PERIOD": "1"}).start()
    try:
        yield k
    finally:
        k.stop()


def _deployment(k, load_file: str) -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "burn", "namespace": "default"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "burn"}},
                    "template": {"metadata": {"labels": {"app": "burn"}}, "spec": {"containers": [{
                        "name": "c", "image": "python", "command": ["python3", "-c", LOAD],
                        "env": [{"name": "LOAD_FILE", "value": load_file}],
                        "resources": {"requests": {"cpu": "20m", "memory": "16Mi"}}}]}}}}
    k.kubectl("apply", "-f", "-", input=json.dumps(dep))
    k.kubectl("rollout", "status", "deployment/burn", "--timeout=60s")


def test_kubectl_top(fast, tmp_path):
    k = fast
    load = tmp_path / "load"
    load.touch()
    _deployment(k, str(load))
    try:
        pod = k.kjson("get", "pods", "-l", "app=burn")["items"][0]["metadata"]["name"]

        def busy():
            r = k.kubectl("top", "pod", pod, "--no-headers", check=False)
            if r.returncode != 0:
                return None
            cpu = r.stdout.split()[1]
            return int(cpu.rstrip("m")) >= 50 and r.stdout  # busy (idle is ~1m); the shared CI machine caps the figure

        out = wait_for(busy, 30, 0.5, "busy pod in kubectl top")
        assert pod in out and "Mi" in out
        by_container = k.kubectl("top", "pod", pod, "--containers").stdout
        assert " c " in by_container
        nodes = k.kubectl("top", "nodes").stdout
        assert "CPU(cores)" in nodes and "MEMORY(bytes)" in nodes and len(nodes.splitlines()) == 2
        with k.http() as c:
            pm = c.get(f"/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/{pod}").json()
            assert pm["kind"] == "PodMetrics" and pm["containers"][0]["usage"]["cpu"].endswith("n")
            assert c.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", params={"labelSelector": "app=nope"}).json()["items"] == []
            assert c.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/missing").status_code == 404
            assert c.post("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", json={}).status_code == 405
    finally:
        load.unlink()


def test_kubectl_autoscale_scales_out_and_back_in(fast, tmp_path):
    k = fast
    load = tmp_path / "load"
    _deployment(k, str(load))
    k.kubectl("autoscale", "deployment/burn", "--cpu-percent=50", "--min=1", "--max=3")
    k.kubectl("patch", "hpa", "burn", "--type=merge", "-p", json.dumps(
        {"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 2}, "scaleUp": {"stabilizationWindowSeconds": 0}}}}))
    hpa = k.kjson("get", "hpa", "burn")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "burn"}
    # idle: 1 replica with a valid metric
    wait_for(lambda: any(c["type"] == "ScalingActive" and c["status"] == "True" for c in (k.kjson("get", "hpa", "burn").get("status") or {}).get("conditions") or []), 30, 0.5, "metrics valid")
    wait_for(lambda: k.kjson("get", "deployment", "burn")["spec"]["replicas"] == 1, 30, 0.5, "idle at 1")
    load.touch()
    wait_for(lambda: k.kjson("get", "deployment", "burn")["spec"]["replicas"] == 3, 60, 0.5, "scaled out to 3")
    st = k.kjson("get", "hpa", "burn")["status"]
    assert st["desiredReplicas"] == 3 and st["lastScaleTime"]
    limited = next(c for c in st["conditions"] if c["type"] == "ScalingLimited")
    assert limited["reason"] in ("TooManyReplicas", "DesiredWithinRange")
    assert "cpu:" in k.kubectl("get", "hpa", "burn").stdout
    load.unlink()
    wait_for(lambda: k.kjson("get", "deployment", "burn")["spec"]["replicas"] == 1, 60, 0.5, "scaled back in to 1")
    events = k.kubectl("get", "events", "--field-selector", "involvedObject.name=burn,reason=SuccessfulRescale").stdout
    assert "New size: 3" in events and "New size: 1" in events
