"""InferenceService end to end on a real ketch: kubectl, the real kubelet running model server Pods, the
gateway on ketch's port, canary rollouts observed through real requests, failing revisions, scale to
and from zero, and the kubernetes client's CustomObjectsApi as the kserve SDK uses it."""

from __future__ import annotations

import collections
import json
import subprocess
import time

import httpx
import pytest

from conftest import wait_for
from serving_helpers import IRIS_ROW, train_sklearn

ISVC = """apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  namespace: {ns}
{annotations}spec:
  predictor:
{extra}    sklearn:
      storageUri: {uri}
"""


def isvc_yaml(name: str, ns: str, uri: str, extra: str = "", annotations: str = "") -> str:
    return ISVC.format(name=name, ns=ns, uri=uri, extra=extra, annotations=annotations)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    return {"lr": (d / "lr", train_sklearn(d / "lr", "lr")), "dt": (d / "dt", train_sklearn(d / "dt", "dt"))}


def ns_of(shared_ketch, name: str) -> str:
    shared_ketch.kubectl("create", "namespace", name)
    return name


def revisions_seen(url: str, n: int, headers: dict | None = None) -> collections.Counter:
    c = collections.Counter()
    with httpx.Client(timeout=30, headers=headers) as client:
        for _ in range(n):
            r = client.post(f"{url}/v1/models/{url.rsplit('/', 1)[1]}:predict", json={"instances": [IRIS_ROW]})
            assert r.status_code == 200, r.text
            c[r.headers["x-ketch-revision"]] += 1
    return c


def test_seed_flow_with_kubectl_and_curl(shared_ketch, models):
    k = shared_ketch
    k.kubectl("apply", "-f", "-", input=isvc_yaml("demo", "default", str(models["lr"][0])))
    k.kubectl("wait", "--for=condition=Ready", "inferenceservice/demo", "--timeout=90s")
    url = k.kubectl("get", "inferenceservice", "demo", "-o", "jsonpath={.status.url}").stdout
    assert url == f"{k.url}/serving/default/demo"
    out = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {k.token}", "-H", "Content-Type: application/json", "-d", json.dumps({"instances": [IRIS_ROW, [5.1, 3.5, 1.4, 0.2]]}), f"{url}/v1/models/demo:predict"],
                         capture_output=True, text=True, timeout=30).stdout
    assert json.loads(out) == {"predictions": models["lr"][1].predict([IRIS_ROW, [5.1, 3.5, 1.4, 0.2]]).tolist()}
    # V2 through the same URL, and virtual-host routing on ketch's port
    r = httpx.post(f"{url}/v2/models/demo/infer", json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]}, headers=k.headers)
    assert r.json()["outputs"][0]["data"] == [1]
    r = httpx.post(f"{k.url}/v1/models/demo:predict", json={"instances": [IRIS_ROW]}, headers={"Host": "demo.default.localhost", **k.headers})
    assert r.json() == {"predictions": [1]}
    table = k.kubectl("get", "isvc").stdout.splitlines()
    assert table[0].split() == ["NAME", "URL", "READY", "PREV", "LATEST", "AGE"]
    assert table[1].split()[:4] == ["demo", url, "True", "100"]
    st = k.kjson("get", "isvc", "demo")["status"]
    assert st["observedGeneration"] == 1 and st["address"]["url"].startswith("http://demo.default.localhost:")
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"PredictorReady": "True", "IngressReady": "True", "Ready": "True"}
    p = st["components"]["predictor"]
    assert p["latestCreatedRevision"] == p["latestReadyRevision"] == "demo-predictor-00001"
    assert p["traffic"] == [{"revisionName": "demo-predictor-00001", "percent": 100, "latestRevision": True, "url": f"{k.url}/serving/default/demo-predictor"}]
    pods = k.kjson("get", "pods", "-l", "serving.kserve.io/inferenceservice=demo")["items"]
    assert len(pods) == 1
    wait_for(lambda: "POST /v1/models/demo:predict" in k.kubectl("logs", pods[0]["metadata"]["name"]).stdout, timeout=20,
             what="the access log in kubectl logs")
    # unknown services answer 404 in KServe's error shape
    r = httpx.post(f"{k.url}/serving/default/nope/v1/models/nope:predict", json={}, headers=k.headers)
    assert r.status_code == 404 and "error" in r.json()


def test_invalid_specs_are_refused_or_reported(shared_ketch, models):
    k = shared_ketch
    ns = ns_of(k, "bad")
    r = k.kubectl("apply", "-f", "-", check=False, input=isvc_yaml("x", ns, str(models["lr"][0]), extra="    canaryTrafficPercent: 150\n"))
    assert r.returncode != 0 and "canaryTrafficPercent" in r.stderr
    both = isvc_yaml("two", ns, str(models["lr"][0])) + "    xgboost:\n      storageUri: /x\n"
    k.kubectl("apply", "-f", "-", input=both)
    cond = wait_for(lambda: next((c for c in (k.kjson("get", "isvc", "two", "-n", ns).get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None),
                    what="Ready condition")
    assert cond["status"] == "False" and cond["reason"] == "InvalidSpec" and "exactly one of" in cond["message"]
    k.kubectl("apply", "-f", "-", input=isvc_yaml("nort", ns, "/x").replace("sklearn:", "model:\n      modelFormat: {name: paddle}\n     "))
    cond = wait_for(lambda: next((c for c in (k.kjson("get", "isvc", "nort", "-n", ns).get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None))
    assert cond["reason"] == "InvalidSpec" and "No runtime found" in cond["message"]


def test_missing_storage_library_named_in_status(shared_ketch):
    """gs:// (KServe's own samples) without gcsfs: the status says which extra to install, and no Pod starts."""
    import importlib.util

    k = shared_ketch
    ns = ns_of(k, "nolib")
    scheme, lib, extra = next((s, m, e) for s, m, e in (("gs", "gcsfs", "gcs"), ("hf", "huggingface_hub", "hf"), ("az", "adlfs", "azure"))
                              if importlib.util.find_spec(m) is None)
    k.kubectl("apply", "-f", "-", input=isvc_yaml("gcs", ns, f"{scheme}://kfserving-examples/models/sklearn/1.0/model"))

    def ready():
        st = k.kjson("get", "isvc", "gcs", "-n", ns).get("status") or {}
        return next((c for c in st.get("conditions", []) if c["type"] == "Ready"), None)

    cond = wait_for(ready, what="Ready condition")
    assert cond["status"] == "False" and cond["reason"] == "StorageUnavailable", cond
    assert f"needs the {lib} library" in cond["message"] and f"ketch[{extra}]" in cond["message"] and "spec.predictor.model.storageUri" in cond["message"]
    assert not k.kjson("get", "pods", "-n", ns)["items"]
    events = k.kjson("get", "events", "-n", ns)["items"]
    assert any(e["reason"] == "StorageUnavailable" and lib in e["message"] for e in events)
    k.kubectl("apply", "-f", "-", input=isvc_yaml("modelcar", ns, "oci://quay.io/me/model:1"))
    cond = wait_for(lambda: (lambda c: c if c and c["reason"] == "StorageUnavailable" else None)(
        next((c for c in (k.kjson("get", "isvc", "modelcar", "-n", ns).get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)))
    assert "modelcars" in cond["message"]


def test_named_canaries_spec_canary_list(shared_ketch, models):
    """KServe's spec.canary[] (Standard mode): a named canary predictor (the stable spec with its fields on
    top) takes its trafficPercent once ready; canaryStatuses and CanaryPredictorReady report it; deleting
    the entry rolls back and removes its Pods."""
    k = shared_ketch
    ns = ns_of(k, "canarylist")
    manifest = isvc_yaml("iris", ns, str(models["lr"][0]), extra="    name: stable\n") + f"""  canary:
  - trafficPercent: 25
    predictor:
      name: v2
      sklearn:
        storageUri: {models['dt'][0]}
"""
    k.kubectl("apply", "-f", "-", input=manifest)
    k.kubectl("wait", "--for=condition=CanaryPredictorReady", "isvc/iris", "-n", ns, "--timeout=90s")
    st = k.kjson("get", "isvc", "iris", "-n", ns)["status"]
    assert st["canaryStatuses"][0]["name"] == "v2" and st["canaryStatuses"][0]["ready"] is True and st["canaryStatuses"][0]["trafficPercent"] == 25
    assert st["components"]["canary-v2"]["latestReadyRevision"] == "iris-canary-v2-00001"
    seen = collections.Counter()
    with k.http() as c:
        for _ in range(160):
            r = c.post(f"/serving/{ns}/iris/v1/models/iris:predict", json={"instances": [IRIS_ROW]})
            assert r.status_code == 200, r.text
            seen[r.headers["x-ketch-revision"]] += 1
    assert set(seen) == {"iris-predictor-00001", "iris-canary-v2-00001"}, seen
    assert 20 <= seen["iris-canary-v2-00001"] <= 64, seen  # binomial(160, 0.25): mean 40, sd 5.5
    pods = k.kjson("get", "pods", "-n", ns, "-l", "component=canary-v2")["items"]
    assert len(pods) == 1 and "--model-format" in pods[0]["spec"]["containers"][0]["args"]
    # rollback: delete the entry
    k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", ns, str(models["lr"][0]), extra="    name: stable\n"))
    wait_for(lambda: not k.kjson("get", "pods", "-n", ns, "-l", "component=canary-v2")["items"], timeout=30, what="canary pods removed")
    st = k.kjson("get", "isvc", "iris", "-n", ns)["status"]
    assert "canaryStatuses" not in st and not any(c["type"] == "CanaryPredictorReady" for c in st["conditions"])
    with k.http() as c:
        revs = {c.post(f"/serving/{ns}/iris/v1/models/iris:predict", json={"instances": [IRIS_ROW]}).headers["x-ketch-revision"] for _ in range(20)}
    assert revs == {"iris-predictor-00001"}
    # refused or reported, naming the field
    r = k.kubectl("apply", "-f", "-", check=False, input=isvc_yaml("bad", ns, str(models["lr"][0])) + """  canary:
  - trafficPercent: 120
    predictor: {name: v2}
""")
    assert r.returncode != 0 and "trafficPercent" in r.stderr
    k.kubectl("apply", "-f", "-", input=isvc_yaml("bad", ns, str(models["lr"][0])) + """  canary:
  - trafficPercent: 10
    predictor: {name: v2, maxReplicas: 3}
""")
    cond = wait_for(lambda: next((c for c in (k.kjson("get", "isvc", "bad", "-n", ns).get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None))
    assert cond["reason"] == "InvalidSpec" and "spec.canary[0].predictor.maxReplicas" in cond["message"]


def test_canary_split_promote_and_pin(shared_ketch, models):
    k = shared_ketch
    ns = ns_of(k, "canary")
    k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", ns, str(models["lr"][0])))
    k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "-n", ns, "--timeout=90s")
    url = k.kjson("get", "isvc", "iris", "-n", ns)["status"]["url"]
    k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", ns, str(models["dt"][0]), extra="    canaryTrafficPercent: 30\n"))

    def split():
        p = (k.kjson("get", "isvc", "iris", "-n", ns)["status"]["components"]["predictor"])
        return {t["revisionName"]: t["percent"] for t in p.get("traffic", [])}

    assert wait_for(lambda: split() == {"iris-predictor-00002": 30, "iris-predictor-00001": 70}, timeout=60, what="30/70 split")
    table = k.kubectl("get", "isvc", "iris", "-n", ns).stdout.splitlines()[1].split()
    assert table[3:5] == ["70", "30"]  # PREV, LATEST
    seen = revisions_seen(url, 300, k.headers)
    assert set(seen) == {"iris-predictor-00001", "iris-predictor-00002"}
    assert 0.18 < seen["iris-predictor-00002"] / 300 < 0.42, seen
    # pin: all traffic back to the previous revision, the canary kept for inspection
    k.kubectl("patch", "isvc", "iris", "-n", ns, "--type", "merge", "-p", '{"spec":{"predictor":{"canaryTrafficPercent":0}}}')
    assert wait_for(lambda: split() == {"iris-predictor-00002": 0, "iris-predictor-00001": 100}, timeout=30)
    assert revisions_seen(url, 50, k.headers) == {"iris-predictor-00001": 50}
    # promote: remove canaryTrafficPercent; the old revision's replicas go away
    k.kubectl("patch", "isvc", "iris", "-n", ns, "--type", "json", "-p", '[{"op":"remove","path":"/spec/predictor/canaryTrafficPercent"}]')
    assert wait_for(lambda: split() == {"iris-predictor-00002": 100}, timeout=30)
    assert revisions_seen(url, 30, k.headers) == {"iris-predictor-00002": 30}
    p = k.kjson("get", "isvc", "iris", "-n", ns)["status"]["components"]["predictor"]
    assert p["latestRolledoutRevision"] == "iris-predictor-00002" and p["previousRolledoutRevision"] == "iris-predictor-00001"
    wait_for(lambda: not k.kjson("get", "pods", "-n", ns, "-l", "serving.knative.dev/revision=iris-predictor-00001")["items"], timeout=30,
             what="old revision scaled down")


def test_failing_revision_never_takes_traffic(shared_ketch, models, tmp_path):
    k = shared_ketch
    ns = ns_of(k, "failing")
    k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", ns, str(models["lr"][0])))
    k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "-n", ns, "--timeout=90s")
    url = k.kjson("get", "isvc", "iris", "-n", ns)["status"]["url"]
    (tmp_path / "empty").mkdir()
    k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", ns, str(tmp_path / "empty")))

    def pred_cond():
        st = k.kjson("get", "isvc", "iris", "-n", ns)["status"]
        return next(c for c in st["conditions"] if c["type"] == "PredictorReady"), st

    cond, st = wait_for(lambda: (lambda c: c if c[0]["status"] == "False" and c[0].get("reason") == "RevisionFailed" else None)(pred_cond()),
                        timeout=60, what="RevisionFailed")
    assert "iris-predictor-00002" in cond["message"]
    failed = k.kjson("get", "pods", "-n", ns, "-l", "serving.knative.dev/revision=iris-predictor-00002")["items"]
    assert len(failed) == 1 and failed[0]["status"]["phase"] == "Failed"  # kept, not restarted in a loop
    wait_for(lambda: "no model file ending in .joblib" in k.kubectl("logs", "-n", ns, failed[0]["metadata"]["name"]).stdout, timeout=20,
             what="the load error in kubectl logs")
    assert st["components"]["predictor"]["traffic"][0]["revisionName"] == "iris-predictor-00001"
    assert st["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert revisions_seen(url, 40, k.headers) == {"iris-predictor-00001": 40}  # still served by the good revision
    # roll forward with a fixed spec: a new revision takes over
    k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", ns, str(models["dt"][0])))
    k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "-n", ns, "--timeout=90s")
    wait_for(lambda: revisions_seen(url, 5, k.headers) == {"iris-predictor-00003": 5}, timeout=30)


def test_scale_to_zero_and_back(shared_ketch, models):
    k = shared_ketch
    ns = ns_of(k, "zero")
    k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", ns, str(models["lr"][0]), extra="    minReplicas: 0\n    maxReplicas: 2\n",
                                                  annotations="  annotations:\n    serving.ketch.io/scale-to-zero-grace-seconds: \"2\"\n"))
    k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "-n", ns, "--timeout=90s")
    url = k.kjson("get", "isvc", "iris", "-n", ns)["status"]["url"]

    def pods():
        return [p for p in k.kjson("get", "pods", "-n", ns)["items"] if not p["metadata"].get("deletionTimestamp")]

    wait_for(lambda: not pods(), timeout=60, what="scale to zero")
    assert k.kjson("get", "isvc", "iris", "-n", ns)["status"]["conditions"][-1]["status"] == "True"  # still Ready at zero
    # requests during the cold start are held, not failed
    with httpx.Client(timeout=60, headers=k.headers) as c:
        r = c.post(f"{url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]})
    assert r.status_code == 200 and r.json() == {"predictions": [1]}
    assert len(pods()) == 1


def test_kubernetes_client_custom_objects_like_kserve_sdk(shared_ketch, models):
    """KServeClient.create / wait_isvc_ready / patch / delete are these CustomObjectsApi calls."""
    from kubernetes import client, config

    k = shared_ketch
    ns = ns_of(k, "sdk")
    api = client.CustomObjectsApi(config.new_client_from_config(str(k.kubeconfig)))
    body = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "sdk-iris", "namespace": ns},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": str(models["lr"][0]), "protocolVersion": "v2"}}}}
    api.create_namespaced_custom_object("serving.kserve.io", "v1beta1", ns, "inferenceservices", body)

    def ready(gen):
        o = api.get_namespaced_custom_object("serving.kserve.io", "v1beta1", ns, "inferenceservices", "sdk-iris")
        st = o.get("status") or {}
        return st.get("observedGeneration", 0) >= gen and any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", [])) and o

    o = wait_for(lambda: ready(1), timeout=90, what="Ready")
    r = httpx.post(f"{o['status']['url']}/v2/models/sdk-iris/infer", json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW}]}, headers=k.headers)
    assert r.json()["outputs"][0]["data"] == [1]
    api.patch_namespaced_custom_object("serving.kserve.io", "v1beta1", ns, "inferenceservices", "sdk-iris",
                                       {"spec": {"predictor": {"model": {"storageUri": str(models["dt"][0])}}}})
    o = wait_for(lambda: ready(2), timeout=90, what="generation 2 Ready")
    assert o["status"]["components"]["predictor"]["latestReadyRevision"] == "sdk-iris-predictor-00002"
    api.delete_namespaced_custom_object("serving.kserve.io", "v1beta1", ns, "inferenceservices", "sdk-iris")
    wait_for(lambda: not k.kjson("get", "pods", "-n", ns)["items"], timeout=30, what="pods garbage-collected")
    assert httpx.post(f"{k.url}/serving/{ns}/sdk-iris/v2/models/sdk-iris/infer", json={}, headers=k.headers).status_code == 404
    time.sleep(0)


TRANSFORMER = '''
from ketch.serving import Model


class AddFeature(Model):
    def preprocess(self, payload, headers=None):
        return {"instances": [row + [1.4] for row in payload["instances"]]}

    def postprocess(self, result, headers=None):
        return {"predictions": [["setosa", "versicolor", "virginica"][p] for p in result["predictions"]]}
'''


def test_transformer_in_front_of_predictor(shared_ketch, models, tmp_path):
    k = shared_ketch
    ns = ns_of(k, "chain")
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "transformer.py").write_text(TRANSFORMER)
    manifest = isvc_yaml("iris", ns, str(models["lr"][0])) + f"""  transformer:
    containers:
    - name: kserve-container
      image: kserve/custom-transformer
      command: ["python", "-m", "ketch.serving.modelserver"]
      args: ["--model-dir", "{tmp_path / 't'}", "--model-class", "transformer:AddFeature"]
"""
    k.kubectl("apply", "-f", "-", input=manifest)
    k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "-n", ns, "--timeout=90s")
    st = k.kjson("get", "isvc", "iris", "-n", ns)["status"]
    assert {c["type"] for c in st["conditions"]} >= {"PredictorReady", "TransformerReady", "IngressReady", "Ready"}
    r = httpx.post(f"{st['url']}/v1/models/iris:predict", json={"instances": [[6.8, 2.8, 4.8]]}, timeout=30, headers=k.headers)
    assert r.status_code == 200, r.text
    want = ["setosa", "versicolor", "virginica"][int(models["lr"][1].predict([[6.8, 2.8, 4.8, 1.4]])[0])]
    assert r.json() == {"predictions": [want]}
    assert r.headers["x-ketch-revision"] == "iris-transformer-00001"
    # the predictor alone, by its component URL, still wants four features
    r = httpx.post(f"{k.url}/serving/{ns}/iris-predictor/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, headers=k.headers)
    assert r.json() == {"predictions": [1]}


def test_serving_runtime_auto_selected(shared_ketch, models):
    k = shared_ketch
    ns = ns_of(k, "runtime")
    k.kubectl("apply", "-f", "-", input=f"""apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  name: my-runtime
  namespace: {ns}
spec:
  supportedModelFormats:
  - name: mine
    autoSelect: true
  protocolVersions: [v1, v2]
  containers:
  - name: kserve-container
    image: me/my-server
    command: ["python", "-m", "ketch.serving.modelserver"]
    args: ["--model-name={{{{.Name}}}}", "--model-dir={{{{.ModelDir}}}}", "--storage-uri={{{{.StorageUri}}}}", "--http-port={{{{.Port}}}}", "--model-format=sklearn"]
""")
    k.kubectl("apply", "-f", "-", input=f"""apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: rt
  namespace: {ns}
spec:
  predictor:
    model:
      modelFormat: {{name: mine}}
      storageUri: {models['lr'][0]}
""")
    k.kubectl("wait", "--for=condition=Ready", "isvc/rt", "-n", ns, "--timeout=90s")
    pod = k.kjson("get", "pods", "-n", ns)["items"][0]
    assert pod["spec"]["containers"][0]["image"] == "me/my-server"
    assert "--model-name=rt" in pod["spec"]["containers"][0]["args"]
    url = k.kjson("get", "isvc", "rt", "-n", ns)["status"]["url"]
    assert httpx.post(f"{url}/v1/models/rt:predict", json={"instances": [IRIS_ROW]}, headers=k.headers).json() == {"predictions": [1]}


def test_autoscale_up_under_concurrency(shared_ketch, models):
    from concurrent.futures import ThreadPoolExecutor

    k = shared_ketch
    ns = ns_of(k, "scale")
    k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", ns, str(models["lr"][0]), extra="    minReplicas: 1\n    maxReplicas: 3\n    scaleMetric: concurrency\n    scaleTarget: 1\n"))
    k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "-n", ns, "--timeout=90s")
    url = k.kjson("get", "isvc", "iris", "-n", ns)["status"]["url"]
    stop = time.time() + 60
    done = []

    def hammer(_):
        with httpx.Client(timeout=30, headers=k.headers) as c:
            while time.time() < stop and not done:
                assert c.post(f"{url}/v1/models/iris:predict", json={"instances": [IRIS_ROW] * 200}).status_code == 200

    def ready_pods():
        return [p for p in k.kjson("get", "pods", "-n", ns)["items"]
                if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))]

    with ThreadPoolExecutor(6) as pool:
        futs = [pool.submit(hammer, i) for i in range(6)]
        try:
            wait_for(lambda: len(ready_pods()) == 3, timeout=50, interval=0.5, what="3 ready replicas under load")
        finally:
            done.append(1)
        for f in futs:
            f.result()
    served = {p["metadata"]["name"] for p in k.kjson("get", "pods", "-n", ns)["items"]}
    assert len(served) >= 3


EXPLAINER = '''
from ketch.serving import Model


class Explainer(Model):
    def explain(self, payload, headers=None):
        return {"explanations": [{"feature": i, "weight": v} for i, v in enumerate(payload["instances"][0])]}
'''


def test_explainer_logger_and_batcher_from_spec(shared_ketch, models, tmp_path):
    k = shared_ketch
    ns = ns_of(k, "extras")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "explainer.py").write_text(EXPLAINER)
    events = tmp_path / "events.jsonl"
    manifest = isvc_yaml("iris", ns, str(models["lr"][0]), extra=f"""    logger:
      mode: all
      url: file://{events}
    batcher:
      maxBatchSize: 16
      maxLatency: 100
""") + f"""  explainer:
    containers:
    - name: kserve-container
      image: kserve/custom-explainer
      command: ["python", "-m", "ketch.serving.modelserver"]
      args: ["--model-dir", "{tmp_path / 'e'}", "--model-class", "explainer:Explainer"]
"""
    k.kubectl("apply", "-f", "-", input=manifest)
    k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "-n", ns, "--timeout=90s")
    url = k.kjson("get", "isvc", "iris", "-n", ns)["status"]["url"]
    r = httpx.post(f"{url}/v1/models/iris:explain", json={"instances": [IRIS_ROW]}, timeout=30, headers=k.headers)
    assert r.status_code == 200 and r.json()["explanations"][0] == {"feature": 0, "weight": 6.8}
    assert r.headers["x-ketch-revision"] == "iris-explainer-00001"
    r = httpx.post(f"{url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, headers=k.headers)
    assert r.json() == {"predictions": [1]} and r.headers["x-ketch-revision"] == "iris-predictor-00001"
    lines = wait_for(lambda: events.exists() and len(events.read_text().splitlines()) >= 2 and events.read_text().splitlines(), timeout=20)
    kinds = [json.loads(ln)["type"] for ln in lines]
    assert kinds[:2] == ["org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"]
    pod = k.kjson("get", "pods", "-n", ns, "-l", "component=predictor")["items"][0]
    args = pod["spec"]["containers"][0]["args"]
    assert args[args.index("--max-batch-size") + 1] == "16" and args[args.index("--max-latency") + 1] == "100"


def test_logger_http_sink_is_fed_through_the_agent_from_spec(shared_ketch, models):
    """An InferenceService whose ``logger`` names an HTTP sink gets KServe's agent arrangement by default:
    its model server hands events to a logger agent process beside it, which delivers them with KServe's
    CloudEvent headers; ``serving.ketch.io/logger-agent: "false"`` keeps delivery in the model server."""
    import psutil

    from test_serving_payloads import Sink

    k = shared_ketch
    ns = ns_of(k, "agent")
    sink = Sink(keep_alive=True)
    try:
        logger = f"    logger:\n      mode: all\n      url: {sink.url}\n"
        k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", ns, str(models["lr"][0]), extra=logger)
                  + "---\n" + isvc_yaml("inproc", ns, str(models["lr"][0]), extra=logger,
                                        annotations='  annotations:\n    serving.ketch.io/logger-agent: "false"\n'))
        k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "isvc/inproc", "-n", ns, "--timeout=90s")
        for name in ("iris", "inproc"):
            url = k.kjson("get", "isvc", name, "-n", ns)["status"]["url"]
            r = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": [IRIS_ROW]}, headers=k.headers, timeout=30)
            assert r.json() == {"predictions": [1]}
        wait_for(lambda: {h.get("ce-inferenceservicename") for h, _ in sink.got} >= {"iris", "inproc"} and len(sink.got) >= 4,
                 timeout=20, what="both services' events at the sink")
        for name in ("iris", "inproc"):
            hs = [h for h, _ in sink.got if h["ce-inferenceservicename"] == name]
            assert sorted(h["ce-type"] for h in hs) == ["org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"]
            assert all(h["ce-namespace"] == ns and h["ce-component"] == "predictor" for h in hs)
        for name, agent in (("iris", True), ("inproc", False)):
            pod = k.kjson("get", "pods", "-n", ns, "-l", f"serving.kserve.io/inferenceservice={name}")["items"][0]
            assert ("--logger-agent" in pod["spec"]["containers"][0]["args"]) is agent
            # the model server's process (the one listening on its port) and the agent it started
            port = int(pod["metadata"]["annotations"]["serving.ketch.io/port"])
            server = next(psutil.Process(c.pid) for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN" and c.pid)
            kids = [" ".join(c.cmdline()) for c in server.children()]
            assert any("ketch.serving.modelserver.logagent" in c for c in kids) is agent, kids
    finally:
        sink.close()
