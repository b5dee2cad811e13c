"""KServe's RawDeployment mode on a real ketch with kubectl: an sklearn iris InferenceService becomes a
Deployment, a Service and an HPA owned by it; predictions go through ketch's gateway; a CPU load makes
the HPA scale the Deployment out; with an external autoscaler `kubectl scale` owns the replicas."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from conftest import make_ketch, wait_for
from serving_helpers import IRIS_ROW, train_sklearn

RAW = """apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  namespace: default
  annotations:
    serving.kserve.io/deploymentMode: RawDeployment
{extra_ann}spec:
  predictor:
    minReplicas: 1
    maxReplicas: 2
    scaleMetric: cpu
    scaleTarget: 5
    sklearn:
      storageUri: {uri}
"""


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    k = make_ketch(tmp_path_factory.mktemp("raw"), env={"KETCH_METRICS_INTERVAL": "0.5", "KETCH_HPA_SYNC_PERIOD": "1"}).start()
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("iris") / "lr"
    return d, train_sklearn(d, "lr")


def predict(k, url: str, name: str) -> list:
    r = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": [IRIS_ROW, [5.1, 3.5, 1.4, 0.2]]}, headers=k.headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


def ready_replicas(k, name: str) -> int:
    return k.kjson("get", "deployment", name).get("status", {}).get("readyReplicas", 0)


def test_raw_deployment_service_hpa_and_scale_out(k, model):
    k.kubectl("apply", "-f", "-", input=RAW.format(name="iris", uri=model[0], extra_ann=""))
    k.kubectl("wait", "--for=condition=Ready", "inferenceservice/iris", "--timeout=120s")
    isvc = k.kjson("get", "isvc", "iris")
    st = isvc["status"]
    assert st["deploymentMode"] == "RawDeployment"
    assert st["url"] == f"{k.url}/serving/default/iris"
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"PredictorReady": "True", "IngressReady": "True", "Ready": "True"}
    assert "latestCreatedRevision" not in st["components"]["predictor"]  # no Knative revisions in raw mode
    assert k.kjson("get", "configmaps", "-l", "serving.kserve.io/inferenceservice=iris")["items"] == []

    objs = k.kjson("get", "deployment,svc,hpa", "-l", "serving.kserve.io/inferenceservice=iris")["items"]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objs) == [
        ("Deployment", "iris-predictor"), ("HorizontalPodAutoscaler", "iris-predictor"), ("Service", "iris-predictor")]
    for o in objs:
        ref = o["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("InferenceService", "iris", isvc["metadata"]["uid"], True)
    by_kind = {o["kind"]: o for o in objs}
    dep, svc, hpa = by_kind["Deployment"], by_kind["Service"], by_kind["HorizontalPodAutoscaler"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["selector"]["matchLabels"] == {"app": "isvc.iris-predictor"}
    assert svc["spec"]["selector"] == {"app": "isvc.iris-predictor"}
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris-predictor"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 2)
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 5}}}]
    assert "iris-predictor" in k.kubectl("get", "deployment,svc,hpa").stdout
    # the Pods are the Deployment's (through its ReplicaSet), not the InferenceService's
    pods = k.kjson("get", "pods", "-l", "app=isvc.iris-predictor")["items"]
    assert len(pods) == 1 and pods[0]["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"

    assert predict(k, st["url"], "iris") == model[1].predict([IRIS_ROW, [5.1, 3.5, 1.4, 0.2]]).tolist()

    # a CPU load through the gateway: the HPA (5 % of the 100m request) scales the Deployment out to maxReplicas
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(headers=k.headers, timeout=30) as c:
            while not stop.is_set():
                c.post(f"{st['url']}/v1/models/iris:predict", json={"instances": [IRIS_ROW] * 50})

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        wait_for(lambda: k.kjson("get", "hpa", "iris-predictor").get("status", {}).get("desiredReplicas") == 2, timeout=90, interval=1,
                 what="the HPA to want 2 replicas")
        wait_for(lambda: ready_replicas(k, "iris-predictor") == 2, timeout=90, interval=1, what="2 ready replicas")
    finally:
        stop.set()
        t.join(30)
    assert "SuccessfulRescale" in k.kubectl("get", "events", "--field-selector", "involvedObject.name=iris-predictor").stdout
    # both replicas share the component's port (SO_REUSEPORT): neither died of "Address already in use"
    # Ready means this replica's model is loaded and it listens, not that some replica answers on the shared port
    pods = k.kjson("get", "pods", "-l", "app=isvc.iris-predictor")["items"]
    for p in pods:
        assert "serving iris on" in k.kubectl("logs", p["metadata"]["name"]).stdout
    time.sleep(2)  # a replica that lost the port race would exit and restart in this time
    pods = k.kjson("get", "pods", "-l", "app=isvc.iris-predictor")["items"]
    assert [cs["restartCount"] for p in pods for cs in p["status"]["containerStatuses"]] == [0, 0], [p["status"] for p in pods]
    assert predict(k, st["url"], "iris") == model[1].predict([IRIS_ROW, [5.1, 3.5, 1.4, 0.2]]).tolist()

    # minReplicas follows the InferenceService into the HPA
    k.kubectl("patch", "isvc", "iris", "--type=merge", "-p", '{"spec":{"predictor":{"minReplicas":2,"maxReplicas":3}}}')
    wait_for(lambda: (lambda h: (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]))(k.kjson("get", "hpa", "iris-predictor")) == (2, 3),
             timeout=30, what="the HPA's bounds to follow the InferenceService")

    # deleting the InferenceService takes its Deployment, Service, HPA and Pods along
    k.kubectl("delete", "isvc", "iris")
    wait_for(lambda: not k.kjson("get", "deployment,svc,hpa,pods", "-l", "serving.kserve.io/inferenceservice=iris")["items"],
             timeout=60, interval=0.5, what="the owned objects to go")


def test_raw_external_autoscaler_kubectl_scale(k, model):
    ann = "    serving.kserve.io/autoscalerClass: external\n"
    k.kubectl("apply", "-f", "-", input=RAW.format(name="ext", uri=model[0], extra_ann=ann))
    k.kubectl("wait", "--for=condition=Ready", "inferenceservice/ext", "--timeout=120s")
    assert k.kjson("get", "hpa", "-l", "serving.kserve.io/inferenceservice=ext")["items"] == []
    k.kubectl("scale", "deployment/ext-predictor", "--replicas=2")
    wait_for(lambda: ready_replicas(k, "ext-predictor") == 2, timeout=90, interval=1, what="kubectl scale to 2 ready replicas")
    # a reconcile of the InferenceService (an annotation change) leaves the scaled replicas alone
    k.kubectl("annotate", "isvc", "ext", "touched=1")
    url = k.kjson("get", "isvc", "ext")["status"]["url"]
    assert predict(k, url, "ext") == model[1].predict([IRIS_ROW, [5.1, 3.5, 1.4, 0.2]]).tolist()
    assert k.kjson("get", "deployment", "ext-predictor")["spec"]["replicas"] == 2

    # a new model rolls the Deployment (a second ReplicaSet) and keeps the scaled replica count
    other = model[0].parent / "dt"
    train_sklearn(other, "dt")
    k.kubectl("patch", "isvc", "ext", "--type=merge", "-p", json.dumps({"spec": {"predictor": {"sklearn": {"storageUri": str(other)}}}}))
    wait_for(lambda: k.kjson("get", "deployment", "ext-predictor")["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == "2",
             timeout=30, what="revision 2 of the Deployment")
    k.kubectl("rollout", "status", "deployment/ext-predictor", "--timeout=120s")
    pods = k.kjson("get", "pods", "-l", "app=isvc.ext-predictor")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 2 and all(str(other) in " ".join(p["spec"]["containers"][0]["args"]) for p in live)
    assert k.kjson("get", "deployment", "ext-predictor")["spec"]["replicas"] == 2
    k.kubectl("wait", "--for=condition=Ready", "inferenceservice/ext", "--timeout=60s")
    assert len(predict(k, url, "ext")) == 2


def test_raw_rejects_knative_metrics(k, model):
    bad = RAW.format(name="conc", uri=model[0], extra_ann="").replace("scaleMetric: cpu", "scaleMetric: concurrency")
    k.kubectl("apply", "-f", "-", input=bad)
    msg = wait_for(lambda: next((c.get("message") for c in k.kjson("get", "isvc", "conc").get("status", {}).get("conditions", [])
                                 if c["type"] == "Ready" and c["status"] == "False" and c.get("reason") == "InvalidSpec"), None),
                   timeout=30, what="an InvalidSpec condition")
    assert "spec.predictor.scaleMetric" in msg
    assert k.kjson("get", "deployment", "-l", "serving.kserve.io/inferenceservice=conc")["items"] == []
