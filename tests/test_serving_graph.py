"""InferenceGraph end to end on a real ketch: real model server Pods behind the gateway, graphs applied with
kubectl, requests through the gateway at the graph's status.url with the fixture's credentials, answers in
KServe's router shapes (V1 and V2 bodies)."""

from __future__ import annotations

import collections
import itertools

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for
from serving_helpers import train_sklearn

NS = "graph"

ADD_FEATURE = '''
from ketch.serving import Model


class AddFeature(Model):
    """A transformer-like step: answers the request it was sent with a fourth feature added."""

    def predict(self, payload, headers=None):
        return {"instances": [row + [1.4] for row in payload["instances"]]}
'''


def isvc(name: str, uri: str, protocol: str = "") -> str:
    proto = f"\n      protocolVersion: {protocol}" if protocol else ""
    return f"""apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  namespace: {NS}
spec:
  predictor:
    model:
      modelFormat: {{name: sklearn}}
      storageUri: {uri}{proto}
---
"""


def graph(name: str, nodes: str) -> str:
    return f"""apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: {name}
  namespace: {NS}
spec:
  nodes:
{nodes}"""


@pytest.fixture(scope="module")
def served(shared_ketch, tmp_path_factory):
    """lr and dt (scikit-learn) and feat (a custom model adding a feature) as InferenceServices."""
    k = shared_ketch
    d = tmp_path_factory.mktemp("graph-models")
    lr, dt = train_sklearn(d / "lr", "lr"), train_sklearn(d / "dt", "dt")
    (d / "feat").mkdir()
    (d / "feat" / "feat.py").write_text(ADD_FEATURE)
    k.kubectl("create", "namespace", NS)
    k.kubectl("apply", "-f", "-", input=isvc("lr", str(d / "lr")) + isvc("dt", str(d / "dt")) + f"""apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: feat
  namespace: {NS}
spec:
  predictor:
    containers:
    - name: kserve-container
      image: me/feature-adder
      command: ["python", "-m", "ketch.serving.modelserver"]
      args: ["--model-dir", "{d / 'feat'}", "--model-class", "feat:AddFeature"]
""")
    k.kubectl("wait", "--for=condition=Ready", "isvc/lr", "isvc/dt", "isvc/feat", "-n", NS, "--timeout=120s")
    # a row on which the two classifiers disagree, so an answer shows which one gave it
    grid = ([a, b, c, e] for a, b, c, e in itertools.product([5.0, 6.0, 7.0], [2.5, 3.0], [4.5, 4.9, 5.1], [1.5, 1.7, 1.8]))
    row = next(r for r in grid if lr.predict([r])[0] != dt.predict([r])[0])
    return {"lr": lr, "dt": dt, "row": row}


def apply_ready(k, manifest: str, name: str) -> dict:
    k.kubectl("apply", "-f", "-", input=manifest)
    k.kubectl("wait", "--for=condition=Ready", f"inferencegraph/{name}", "-n", NS, "--timeout=60s")
    return k.kjson("get", "ig", name, "-n", NS)


def test_sequence_transformer_then_classifier(shared_ketch, served):
    k = shared_ketch
    ig = apply_ready(k, graph("seq", """    root:
      routerType: Sequence
      steps:
      - name: prep
        serviceName: feat
      - name: classify
        serviceName: lr
        data: $response
"""), "seq")
    url = ig["status"]["url"]
    assert url == f"{k.url}/serving/{NS}/seq"
    assert ig["status"]["address"]["url"].startswith(f"http://seq.{NS}.localhost:")
    table = k.kubectl("get", "ig", "-n", NS).stdout.splitlines()
    assert table[0].split() == ["NAME", "URL", "READY", "AGE"] and table[1].split()[:3] == ["seq", url, "True"]
    assert any(e["reason"] == "InferenceGraphReady" for e in k.kjson("get", "events", "-n", NS)["items"])
    rows = [[6.8, 2.8, 4.8], [5.1, 3.5, 1.4]]
    with k.http() as c:
        r = c.post(url, json={"instances": rows})
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": served["lr"].predict([x + [1.4] for x in rows]).tolist()}
        assert r.headers["content-type"] == "application/json"
        # any path under the graph's URL runs the graph, as KServe's router serves "/"
        assert c.post(url + "/v1/models/seq:predict", json={"instances": rows}).json() == r.json()
        # virtual-host routing reaches graphs too
        assert c.post("/", json={"instances": rows}, headers={"Host": f"seq.{NS}.localhost"}).json() == r.json()

    # a Hard step that fails stops the sequence with its own answer; $request gives a later step the original input
    apply_ready(k, graph("seq-hard", """    root:
      routerType: Sequence
      steps:
      - serviceName: lr
        dependency: Hard
      - serviceName: feat
        data: $request
"""), "seq-hard")
    with k.http() as c:
        r = c.post(f"/serving/{NS}/seq-hard", json={"instances": rows})
        assert r.status_code == 400 and "expecting 4 features" in r.json()["error"], r.text  # lr's own answer
        # with four features lr answers and the next step gets the original request, not lr's response
        r = c.post(f"/serving/{NS}/seq-hard", json={"instances": [[1.0, 2.0, 3.0, 4.0]]})
        assert r.status_code == 200 and r.json() == {"instances": [[1.0, 2.0, 3.0, 4.0, 1.4]]}


def test_switch_on_a_request_field(shared_ketch, served):
    k = shared_ketch
    ig = apply_ready(k, graph("switch", """    root:
      routerType: Switch
      steps:
      - serviceName: dt
        condition: '[@this].#(model=="dt")'
      - serviceName: lr
        condition: "[@this].#(model==lr)"
"""), "switch")
    row = served["row"]
    with k.http() as c:
        for model in ("dt", "lr", "dt"):
            r = c.post(ig["status"]["url"], json={"instances": [row], "model": model})
            assert r.status_code == 200, r.text
            assert r.json() == {"predictions": served[model].predict([row]).tolist()}, model
        r = c.post(ig["status"]["url"], json={"instances": [row], "model": "xgb"})
        assert r.status_code == 404
        assert r.json() == {"error": "Failed to process request", "cause": "None of the routes matched with the switch condition under node root"}


def test_ensemble_v1_through_a_node_and_v2_by_url(shared_ketch, served):
    k = shared_ketch
    ig = apply_ready(k, graph("ens", """    root:
      routerType: Sequence
      steps:
      - serviceName: feat
      - nodeName: both
        data: $response
    both:
      routerType: Ensemble
      steps:
      - name: lr
        serviceName: lr
      - name: dt
        serviceName: dt
"""), "ens")
    row3 = served["row"][:3]
    full = [served["row"][:3] + [1.4]]
    with k.http() as c:
        r = c.post(ig["status"]["url"], json={"instances": [row3]})
        assert r.status_code == 200, r.text
        assert r.json() == {"lr": {"predictions": served["lr"].predict(full).tolist()},
                            "dt": {"predictions": served["dt"].predict(full).tolist()}}
    # V2 bodies: steps by URL on ketch's gateway (unnamed steps are keyed by index, as in KServe)
    ig = apply_ready(k, graph("ens-v2", f"""    root:
      routerType: Ensemble
      steps:
      - serviceUrl: {k.url}/serving/{NS}/lr/v2/models/lr/infer
      - serviceUrl: {k.url}/serving/{NS}/dt/v2/models/dt/infer
"""), "ens-v2")
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": served["row"]}]}
    with k.http() as c:
        r = c.post(ig["status"]["url"], json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert set(out) == {"0", "1"}
        assert out["0"]["model_name"] == "lr" and out["1"]["model_name"] == "dt"
        assert out["0"]["outputs"][0]["data"] == served["lr"].predict([served["row"]]).tolist()
        assert out["1"]["outputs"][0]["data"] == served["dt"].predict([served["row"]]).tolist()


def test_splitter_80_20(shared_ketch, served):
    k = shared_ketch
    ig = apply_ready(k, graph("split", """    root:
      routerType: Splitter
      steps:
      - serviceName: lr
        weight: 80
      - serviceName: dt
        weight: 20
"""), "split")
    row = served["row"]
    answers = {tuple(served[m].predict([row]).tolist()): m for m in ("lr", "dt")}
    seen: collections.Counter = collections.Counter()
    with k.http() as c:
        for _ in range(200):
            r = c.post(ig["status"]["url"], json={"instances": [row]})
            assert r.status_code == 200, r.text
            seen[answers[tuple(r.json()["predictions"])]] += 1
    assert 136 <= seen["lr"] <= 184, seen  # binomial(200, 0.8): more than 4 sd either side would be a bug
    with k.http() as c:
        text = c.get("/metrics").text
    node = [s for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == "ketch_inferencegraph_node_duration_seconds_count" and s.labels.get("inferencegraph") == "split"]
    assert [(s.labels["node"], s.labels["code"], s.value) for s in node] == [("root", "200", 200.0)]


def test_invalid_graphs_are_refused_naming_the_field(shared_ketch, served):
    k = shared_ketch
    r = k.kubectl("apply", "-f", "-", check=False, input=graph("bad", """    root:
      routerType: Splitter
      steps:
      - serviceName: lr
        weight: 70
      - serviceName: dt
        weight: 20
"""))
    assert r.returncode != 0 and "spec.nodes.root.steps" in r.stderr and "sum to 100" in r.stderr, r.stderr
    r = k.kubectl("apply", "-f", "-", check=False, input=graph("bad", """    start:
      routerType: Sequence
      steps:
      - nodeName: nowhere
"""))
    assert r.returncode != 0 and "spec.nodes.root" in r.stderr and "spec.nodes.start.steps[0].nodeName" in r.stderr, r.stderr
    r = k.kubectl("apply", "-f", "-", check=False, input=graph("bad", """    root:
      routerType: Fanout
      steps:
      - serviceName: lr
"""))
    assert r.returncode != 0 and "spec.nodes.root.routerType" in r.stderr, r.stderr
    assert k.kubectl("get", "ig", "bad", "-n", NS, check=False).returncode != 0  # nothing half-written
    # a step naming a missing InferenceService: the graph exists but is not Ready, and says why
    k.kubectl("apply", "-f", "-", input=graph("missing", """    root:
      routerType: Sequence
      steps:
      - serviceName: nosuch
"""))

    def cond():
        for c in (k.kjson("get", "ig", "missing", "-n", NS).get("status") or {}).get("conditions") or []:
            if c["type"] == "Ready":
                return c
        return None

    c = wait_for(cond, timeout=30, what="Ready condition")
    assert c["status"] == "False" and c["reason"] == "ServiceNotFound" and "nosuch" in c["message"]
    with k.http() as client:
        assert client.post(f"/serving/{NS}/missing", json={}).status_code == 404
