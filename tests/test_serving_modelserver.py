"""ketch's model server as a real process on loopback: KServe's V1 and V2 REST answers, error paths,
tritonclient over HTTP and gRPC, metrics, adaptive batching, request logging."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from serving_helpers import IRIS_ROW, ModelServer, iris, train_sklearn


@pytest.fixture(scope="module")
def lr(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lr")
    model = train_sklearn(tmp / "model")
    s = ModelServer(tmp, "--model-name", "iris", "--model-dir", str(tmp / "model"), grpc=True).wait_ready()
    s.model = model
    yield s
    s.stop()


def test_v1_routes(lr):
    c = httpx.Client(base_url=lr.url)
    assert c.get("/").json() == {"status": "alive"}
    assert c.get("/v1/models").json() == {"models": ["iris"]}
    assert c.get("/v1/models/iris").json() == {"name": "iris", "ready": True}
    x, _ = iris()
    r = c.post("/v1/models/iris:predict", json={"instances": x[:5].tolist()})
    assert r.status_code == 200
    assert r.json() == {"predictions": lr.model.predict(x[:5]).tolist()}
    # "inputs" is accepted as well, and JSON without a Content-Type (curl -d, tritonclient)
    assert c.post("/v1/models/iris:predict", json={"inputs": [IRIS_ROW]}).json() == {"predictions": [1]}
    r = c.post("/v1/models/iris:predict", content=json.dumps({"instances": [IRIS_ROW]}), headers={"content-type": ""})
    assert r.json() == {"predictions": [1]}


def test_v1_errors(lr):
    c = httpx.Client(base_url=lr.url)
    r = c.get("/v1/models/nope")
    assert (r.status_code, r.json()) == (404, {"error": "Model with name nope does not exist."})
    r = c.post("/v1/models/nope:predict", json={"instances": [IRIS_ROW]})
    assert (r.status_code, r.json()) == (404, {"error": "Model with name nope does not exist."})
    r = c.post("/v1/models/iris:predict", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"].startswith("Unrecognized request format")
    r = c.post("/v1/models/iris:predict", json={"rows": [IRIS_ROW]})
    assert r.status_code == 400 and "instances" in r.json()["error"]
    r = c.post("/v1/models/iris:predict", json={"instances": 5})
    assert (r.status_code, r.json()) == (400, {"error": 'Expected "instances" to be a list'})
    r = c.post("/v1/models/iris:predict", json={"instances": [[1.0, 2.0]]})  # wrong feature count: the client's error, the model's message
    assert r.status_code == 400 and "features" in r.json()["error"]
    r = c.post("/v1/models/iris:explain", json={"instances": [IRIS_ROW]})
    assert (r.status_code, r.json()) == (501, {"error": "Could not find explainer_host."})
    assert c.get("/v1/models/iris:predict").status_code == 405
    assert c.get("/nowhere").status_code == 404


def test_v2_routes(lr):
    c = httpx.Client(base_url=lr.url)
    meta = c.get("/v2").json()
    assert meta["name"] and "version" in meta and "extensions" in meta
    assert c.get("/v2/health/live").json() == {"live": True}
    assert c.get("/v2/health/ready").json() == {"ready": True}
    assert c.get("/v2/models/iris").json() == {"name": "iris", "versions": None, "platform": "", "inputs": [], "outputs": []}
    assert c.get("/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    r = c.post("/v2/models/iris/infer", json={"id": "r1", "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                                                                       "data": [IRIS_ROW, [5.1, 3.5, 1.4, 0.2]]}]})
    assert r.status_code == 200
    assert r.json() == {"model_name": "iris", "model_version": None, "id": "r1", "parameters": None,
                        "outputs": [{"name": "output-0", "shape": [2], "datatype": "INT64", "parameters": None, "data": [1, 0]}]}
    # flat data, a version in the path, and no Content-Type
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]})
    r = c.post("/v2/models/iris/versions/1/infer", content=body, headers={"content-type": ""})
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [1] and r.json()["model_version"] == "1"
    assert r.json()["id"]  # generated when absent


def test_v2_errors(lr):
    c = httpx.Client(base_url=lr.url)

    def infer(body, name="iris", **kw):
        return c.post(f"/v2/models/{name}/infer", content=body if isinstance(body, bytes) else json.dumps(body), **kw)

    r = infer({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW}]}, name="nope")
    assert (r.status_code, r.json()) == (404, {"error": "Model with name nope does not exist."})
    assert c.get("/v2/models/nope/ready").status_code == 404
    r = infer(b"{oops")
    assert r.status_code == 400 and "Unrecognized request format" in r.json()["error"]
    r = infer({"id": "x"})
    assert r.status_code == 400 and "inputs" in r.json()["error"]
    r = infer({"inputs": [{"name": "x", "shape": [1, 4], "data": IRIS_ROW}]})
    assert (r.status_code, r.json()) == (400, {"error": "inputs[0].datatype is required"})
    r = infer({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": IRIS_ROW}]})
    assert r.status_code == 400 and "FP99" in r.json()["error"]
    r = infer({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW[:3]}]})
    assert r.status_code == 400 and "cannot reshape array of size 3 into shape (1,4)" in r.json()["error"]
    r = infer({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]})
    assert r.status_code == 400 and "inference-header-content-length" in r.json()["error"]
    r = c.get("/v2/models/iris/versions/2")
    assert (r.status_code, r.json()) == (501, {"error": "Model versioning not supported yet."})


def test_v2_binary_extension(lr):
    x = np.array([IRIS_ROW, [5.1, 3.5, 1.4, 0.2]], dtype=np.float32)
    head = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "output-0", "parameters": {"binary_data": True}}]}).encode()
    r = httpx.post(f"{lr.url}/v2/models/iris/infer", content=head + x.tobytes(), headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 200
    n = int(r.headers["inference-header-content-length"])
    doc = json.loads(r.content[:n])
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert np.frombuffer(r.content[n:], dtype="<i8").tolist() == [1, 0]


def test_tritonclient_http(lr):
    import tritonclient.http as th

    c = th.InferenceServerClient(lr.url.removeprefix("http://"))
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("iris")
    assert c.get_model_metadata("iris")["name"] == "iris"
    for binary in (False, True):  # JSON without Content-Type (KServe rejects it), and binary tensors
        i = th.InferInput("input-0", [1, 4], "FP32")
        i.set_data_from_numpy(np.array([IRIS_ROW], dtype=np.float32), binary_data=binary)
        r = c.infer("iris", [i], outputs=[th.InferRequestedOutput("output-0", binary_data=binary)])
        assert r.as_numpy("output-0").tolist() == [1]
    with pytest.raises(Exception, match="does not exist"):
        c.infer("nope", [i])


def test_tritonclient_grpc(lr):
    import grpc
    import tritonclient.grpc as tg

    c = tg.InferenceServerClient(f"127.0.0.1:{lr.grpc_port}")
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("iris")
    assert c.get_model_metadata("iris").name == "iris"
    x, _ = iris()
    i = tg.InferInput("input-0", [3, 4], "FP32")
    i.set_data_from_numpy(x[:3].astype(np.float32))
    r = c.infer("iris", [i])
    assert r.as_numpy("output-0").tolist() == lr.model.predict(x[:3]).tolist()
    with pytest.raises(tg.InferenceServerException) as e:
        c.is_model_ready("nope")
    assert e.value.status() == str(grpc.StatusCode.NOT_FOUND)
    bad = tg.InferInput("input-0", [1, 5], "FP32")  # five features for a four-feature model
    bad.set_data_from_numpy(np.array([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype=np.float32))
    with pytest.raises(tg.InferenceServerException) as e:
        c.infer("iris", [bad])
    assert e.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)


def test_metrics_and_access_log(lr):
    httpx.post(f"{lr.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]})
    text = httpx.get(f"{lr.url}/metrics").text
    count = [ln for ln in text.splitlines() if ln.startswith('request_predict_seconds_count{model_name="iris"}')]
    assert count and float(count[0].split()[-1]) >= 1
    assert 'ketch_model_requests_total{code="200",model_name="iris",protocol="v1"}' in text
    assert 'ketch_model_request_duration_seconds_bucket' in text and "process_cpu_seconds_total" in text
    assert '"POST /v1/models/iris:predict HTTP/1.1" 200' in lr.output()


def test_adaptive_batching_merges_concurrent_requests(tmp_path):
    model = train_sklearn(tmp_path / "rf", "rf")
    s = ModelServer(tmp_path, "--model-name", "rf", "--model-dir", str(tmp_path / "rf"), "--max-batch-size", "64", "--no-access-log").wait_ready()
    try:
        x, _ = iris()

        def one(i):
            with httpx.Client() as c:
                return [c.post(f"{s.url}/v1/models/rf:predict", json={"instances": [x[(i + k) % 150].tolist()]}).json()["predictions"][0]
                        for k in range(10)]

        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(one, range(16)))
        for i, preds in enumerate(got):  # every request got its own row's answer back
            assert preds == [int(model.predict(x[[(i + k) % 150]])[0]) for k in range(10)]
        text = httpx.get(f"{s.url}/metrics").text
        vals = {ln.split("{")[0]: float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith("ketch_model_batch_size_")}
        assert vals["ketch_model_batch_size_sum"] == 160
        assert vals["ketch_model_batch_size_count"] < 160  # some predict calls served several requests
    finally:
        s.stop()


def test_request_logger_to_file(tmp_path):
    train_sklearn(tmp_path / "m")
    out = tmp_path / "events.jsonl"
    s = ModelServer(tmp_path, "--model-name", "iris", "--model-dir", str(tmp_path / "m"), "--logger-url", f"file://{out}",
                    "--service-name", "demo", "--namespace", "ns1").wait_ready()
    try:
        httpx.post(f"{s.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]})
        import time

        for _ in range(50):
            if out.exists() and len(out.read_text().splitlines()) >= 2:
                break
            time.sleep(0.1)
        events = [json.loads(ln) for ln in out.read_text().splitlines()]
        assert [e["type"] for e in events] == ["org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"]
        assert events[0]["data"] == {"instances": [IRIS_ROW]} and events[1]["data"] == {"predictions": [1]}
        assert events[0]["id"] == events[1]["id"] and events[0]["inferenceservicename"] == "demo" and events[0]["namespace"] == "ns1"
    finally:
        s.stop()


def test_failed_load_exits_with_reason(tmp_path):
    (tmp_path / "empty").mkdir()
    s = ModelServer(tmp_path, "--model-name", "x", "--model-dir", str(tmp_path / "empty"), "--model-format", "sklearn")
    assert s.proc.wait(30) == 1
    assert "no model file ending in .joblib" in s.output()
