"""Model monitoring on a real ketch: an InferenceService logging to the built-in payload store (read back
through ketch's port), and the docs' drift demo: a DriftDetector with iris as its reference data sees no
drift on iris-like requests and raises it (status, condition, annotation and Event on the
InferenceService) once the inputs shift."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for
from serving_helpers import iris, train_sklearn

NS = "monitor"


@pytest.fixture(scope="module")
def served(shared_ketch, tmp_path_factory):
    k = shared_ketch
    d = tmp_path_factory.mktemp("monitor")
    model = train_sklearn(d / "model", "lr")
    x, _y = iris()
    np.save(d / "reference.npy", x)
    k.kubectl("create", "namespace", NS)
    k.kubectl("apply", "-f", "-", input=f"""apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  namespace: {NS}
spec:
  predictor:
    logger:
      mode: all
    sklearn:
      storageUri: {d / 'model'}
""")
    k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "-n", NS, "--timeout=90s")
    return {"model": model, "x": x, "reference": d / "reference.npy"}


def post_rows(k, rows) -> list:
    out = []
    with k.http() as c:
        for i in range(0, len(rows), 10):
            r = c.post(f"/serving/{NS}/iris/v1/models/iris:predict", json={"instances": rows[i:i + 10]})
            assert r.status_code == 200, r.text
            out.extend(r.json()["predictions"])
    return out


def test_payloads_in_the_builtin_store(shared_ketch, served):
    k = shared_ketch
    rows = served["x"][:3].tolist()
    with k.http() as c:
        r = c.post(f"/serving/{NS}/iris/v1/models/iris:predict", json={"instances": rows}, headers={"x-request-id": "abc"})
        assert r.status_code == 200

        def logged():
            items = c.get(f"/serving-payloads/{NS}/iris", params={"limit": 50}).json()["items"]
            return [e for e in items if e.get("data") == {"instances": rows}] and items

        items = wait_for(logged, timeout=15, what="the request in the payload store")
        req = next(e for e in items if e.get("data") == {"instances": rows})
        assert req["type"] == "org.kubeflow.serving.inference.request" and req["inferenceservicename"] == "iris" and req["namespace"] == NS
        resp = next(e for e in items if e["id"] == req["id"] and e["type"].endswith("response"))
        assert resp["data"] == {"predictions": served["model"].predict(rows).tolist()}
        only = c.get(f"/serving-payloads/{NS}/iris", params={"type": "response", "limit": 5}).json()["items"]
        assert only and all(e["type"].endswith(".response") for e in only)
        bad = c.get(f"/serving-payloads/{NS}/iris", params={"type": "everything"})
        assert bad.status_code == 400 and "type" in bad.json()["message"]


def test_drift_demo_iris(shared_ketch, served):
    k = shared_ketch
    k.kubectl("apply", "-f", "-", input=f"""apiVersion: serving.ketch.io/v1alpha1
kind: DriftDetector
metadata:
  name: iris-drift
  namespace: {NS}
spec:
  inferenceServiceName: iris
  referenceUri: {served['reference']}
  windowSize: 50
  intervalSeconds: 0.3
  outlierPValue: 0.001
""")

    def status():
        return k.kjson("get", "driftdetector", "iris-drift", "-n", NS).get("status") or {}

    def cond(t: str) -> dict:
        return next((c for c in status().get("conditions") or [] if c["type"] == t), {})

    wait_for(lambda: cond("Ready").get("status") == "True", timeout=20, what="detector ready")
    rng = np.random.default_rng(0)
    x = served["x"]
    # reference-like traffic: rows drawn from iris itself
    post_rows(k, x[rng.integers(0, len(x), 50)].tolist())
    wait_for(lambda: cond("Drift").get("reason") == "NoDrift", timeout=20, what="no drift on reference data")
    st = status()
    assert st["drift"]["isDrift"] is False and st["drift"]["windowRows"] == 50
    assert st["drift"]["pValue"] >= st["drift"]["threshold"] == pytest.approx(0.05 / 4)
    assert len(st["drift"]["featurePValues"]) == 4
    assert st["outliers"]["fraction"] <= 0.04
    assert k.kjson("get", "isvc", "iris", "-n", NS)["metadata"]["annotations"]["serving.ketch.io/drift"] == "false"

    # shifted inputs: longer sepals and petals than anything in the training data
    shifted = x[rng.integers(0, len(x), 50)] + np.array([1.5, 0.0, 2.0, 0.0])
    post_rows(k, shifted.tolist())
    wait_for(lambda: cond("Drift").get("status") == "True", timeout=20, what="drift on shifted data")
    st = status()
    assert st["drift"]["isDrift"] is True and st["drift"]["pValue"] < st["drift"]["threshold"]
    assert cond("Drift")["reason"] == "DriftDetected" and "p-value" in cond("Drift")["message"]
    assert st["drift"]["distance"] > 0.5  # KS distance: the shifted features barely overlap the reference
    assert st["outliers"]["outliers"] >= 10
    isvc = k.kjson("get", "isvc", "iris", "-n", NS)
    assert isvc["metadata"]["annotations"]["serving.ketch.io/drift"] == "true"
    events = k.kjson("get", "events", "-n", NS, "--field-selector", "involvedObject.name=iris")["items"]
    assert any(e["reason"] == "DriftDetected" and e["type"] == "Warning" and e["involvedObject"]["kind"] == "InferenceService" for e in events)
    # the results as metrics on ketch's /metrics, for alert rules
    with k.http() as c:
        text = c.get("/metrics").text
    got = {(s.name, s.labels.get("detector")): s.value for fam in text_string_to_metric_families(text) for s in fam.samples
           if s.labels.get("inferenceservice") == "iris"}
    assert got[("ketch_drift_is_drift", "iris-drift")] == 1
    assert got[("ketch_drift_p_value", "iris-drift")] < got[("ketch_drift_threshold", "iris-drift")]
    assert got[("ketch_drift_score", "iris-drift")] == pytest.approx(st["drift"]["distance"], rel=1e-3)
    assert got[("ketch_drift_window_rows", "iris-drift")] == 50
    assert got[("ketch_outlier_instances_total", "iris-drift")] == st["outliers"]["outliers"]
    assert got[("ketch_outlier_checked_instances_total", "iris-drift")] >= 100  # every logged row, older ones too
    table = k.kubectl("get", "drift", "-n", NS).stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "INFERENCESERVICE", "DRIFT", "P-VALUE"] and table[1].split()[:3] == ["iris-drift", "iris", "True"]


def test_detector_says_what_is_missing(shared_ketch, served):
    k = shared_ketch
    k.kubectl("apply", "-f", "-", input=f"""apiVersion: serving.ketch.io/v1alpha1
kind: DriftDetector
metadata:
  name: nothing
  namespace: {NS}
spec:
  inferenceServiceName: iris
  referenceUri: {served['reference']}.missing
""")

    def ready():
        st = k.kjson("get", "driftdetector", "nothing", "-n", NS).get("status") or {}
        return next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), None)

    c = wait_for(ready, timeout=20, what="Ready condition")
    assert c["status"] == "False" and c["reason"] == "ReferenceError" and "spec.referenceUri" in c["message"]
    r = k.kubectl("apply", "-f", "-", check=False, input=f"""apiVersion: serving.ketch.io/v1alpha1
kind: DriftDetector
metadata:
  name: bad
  namespace: {NS}
spec:
  inferenceServiceName: iris
  referenceUri: x.npy
  method: mmd
""")
    assert r.returncode != 0 and "spec.method" in r.stderr
