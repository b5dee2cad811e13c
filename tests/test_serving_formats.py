"""Every model format behind the registry, served by a real model server process, answers like the
framework itself; custom Python models and transformers chain as KServe's do."""

from __future__ import annotations

import textwrap

import httpx
import numpy as np
import pytest

from serving_helpers import IRIS_ROW, ModelServer, iris


def serve_and_predict(tmp_path, model_dir, fmt, rows, *extra):
    s = ModelServer(tmp_path, "--model-name", "m", "--model-dir", str(model_dir), *(["--model-format", fmt] if fmt else []), *extra).wait_ready()
    try:
        v1 = httpx.post(f"{s.url}/v1/models/m:predict", json={"instances": rows})
        v2 = httpx.post(f"{s.url}/v2/models/m/infer", json={"inputs": [{"name": "x", "shape": [len(rows), len(rows[0])], "datatype": "FP32", "data": rows}]})
        assert v1.status_code == 200, v1.text
        assert v2.status_code == 200, v2.text
        return np.asarray(v1.json()["predictions"]), v2.json()["outputs"][0]
    finally:
        s.stop()


def test_xgboost(tmp_path):
    xgb = pytest.importorskip("xgboost")
    x, y = iris()
    booster = xgb.train({"objective": "multi:softprob", "num_class": 3}, xgb.DMatrix(x, label=y), num_boost_round=5)
    (tmp_path / "m").mkdir()
    booster.save_model(str(tmp_path / "m" / "model.bst"))
    v1, v2 = serve_and_predict(tmp_path, tmp_path / "m", "xgboost", x[:3].tolist())
    want = booster.predict(xgb.DMatrix(x[:3].astype(np.float32)))
    assert np.allclose(v1, want, atol=1e-6)
    assert v2["datatype"] == "FP32" and v2["shape"] == [3, 3] and np.allclose(v2["data"], want.reshape(-1), atol=1e-6)


def test_lightgbm(tmp_path):
    lgb = pytest.importorskip("lightgbm")
    x, y = iris()
    booster = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1}, lgb.Dataset(x, label=y), num_boost_round=5)
    (tmp_path / "m").mkdir()
    booster.save_model(str(tmp_path / "m" / "model.bst"))
    v1, _ = serve_and_predict(tmp_path, tmp_path / "m", "lightgbm", x[:3].tolist())
    assert np.allclose(v1, booster.predict(x[:3]), atol=1e-6)


def test_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper, save

    w = np.array([[1.0, -1.0], [0.5, 0.5], [0.0, 2.0], [1.0, 0.0]], dtype=np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["output"])], "lin",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 2])], [numpy_helper.from_array(w, "w")])
    (tmp_path / "m").mkdir()
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "m" / "model.onnx"))
    v1, v2 = serve_and_predict(tmp_path, tmp_path / "m", None, [IRIS_ROW])  # format guessed from model.onnx
    want = np.array([IRIS_ROW], dtype=np.float32) @ w
    assert np.allclose(v1, want) and np.allclose(v2["data"], want.reshape(-1))


def test_pytorch_torchscript(tmp_path):
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(4, 3)
    (tmp_path / "m").mkdir()
    torch.jit.save(torch.jit.script(lin), str(tmp_path / "m" / "model.pt"))
    v1, _ = serve_and_predict(tmp_path, tmp_path / "m", "pytorch", [IRIS_ROW])
    with torch.no_grad():
        want = lin(torch.tensor([IRIS_ROW])).numpy()
    assert np.allclose(v1, want, atol=1e-5)


CUSTOM = '''
from ketch.serving import Model


class Doubler(Model):
    """Answers 2x each number; a V1 custom model with all three steps."""

    def load(self):
        self.ready = True
        return True

    def preprocess(self, payload, headers=None):
        return [[v for v in row] for row in payload["instances"]]

    def predict(self, rows, headers=None):
        return [[2 * v for v in row] for row in rows]

    def postprocess(self, result, headers=None):
        return {"predictions": result, "by": self.name}
'''

TRANSFORMER = '''
from ketch.serving import Model


class AddFeature(Model):
    """A transformer: turns {"instances": [[a, b, c]]} into 4 features, and labels the answer."""

    def preprocess(self, payload, headers=None):
        return {"instances": [row + [1.4] for row in payload["instances"]]}

    def postprocess(self, result, headers=None):
        names = ["setosa", "versicolor", "virginica"]
        return {"predictions": [names[p] for p in result["predictions"]]}
'''


def test_custom_model(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.py").write_text(textwrap.dedent(CUSTOM))
    s = ModelServer(tmp_path, "--model-name", "dbl", "--model-dir", str(tmp_path / "m")).wait_ready()
    try:
        r = httpx.post(f"{s.url}/v1/models/dbl:predict", json={"instances": [[1, 2], [3, 4]]})
        assert r.json() == {"predictions": [[2, 4], [6, 8]], "by": "dbl"}
        r = httpx.post(f"{s.url}/v1/models/dbl:predict", json={"rows": []})
        assert r.status_code == 500 and r.json() == {"error": "KeyError : 'instances'"}
        text = httpx.get(f"{s.url}/metrics").text
        assert 'request_preprocess_seconds_count{model_name="dbl"}' in text and 'request_postprocess_seconds_count{model_name="dbl"}' in text
    finally:
        s.stop()


def test_transformer_chains_to_predictor(tmp_path):
    from serving_helpers import train_sklearn

    model = train_sklearn(tmp_path / "pred")
    pred = ModelServer(tmp_path, "--model-name", "iris", "--model-dir", str(tmp_path / "pred")).wait_ready()
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "transformer.py").write_text(textwrap.dedent(TRANSFORMER))
    tr = ModelServer(tmp_path, "--model-name", "iris", "--model-dir", str(tmp_path / "t"), "--model-class", "transformer:AddFeature",
                     "--predictor-host", f"127.0.0.1:{pred.port}").wait_ready()
    try:
        r = httpx.post(f"{tr.url}/v1/models/iris:predict", json={"instances": [[6.8, 2.8, 4.8], [5.1, 3.5, 1.4]]})
        assert r.status_code == 200, r.text
        names = ["setosa", "versicolor", "virginica"]
        want = [names[i] for i in model.predict([[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 1.4]])]
        assert r.json() == {"predictions": want}
        assert '"POST /v1/models/iris:predict HTTP/1.1" 200' in pred.output()  # it really went through the predictor
    finally:
        tr.stop()
        pred.stop()
