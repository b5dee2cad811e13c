"""gRPC ModelInfer through ketch's gateway (KETCH_SERVING_GRPC_PORT) to an InferenceService's predictor Pod
serving gRPC, with a real gRPC client (tritonclient), carrying the fixture's credentials as metadata."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import free_port, make_ketch
from serving_helpers import iris, train_sklearn


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("grpc"), env={"KETCH_SERVING_GRPC_PORT": str(free_port())}).start()
    try:
        yield kk
    finally:
        kk.stop()


def test_model_infer_through_the_gateway(k, tmp_path):
    import grpc
    import tritonclient.grpc as tg

    model = train_sklearn(tmp_path / "lr")
    k.kubectl("create", "namespace", "g")
    k.kubectl("apply", "-f", "-", input=f"""apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  namespace: g
spec:
  predictor:
    model:
      modelFormat: {{name: sklearn}}
      protocolVersion: grpc-v2
      storageUri: {tmp_path / 'lr'}
""")
    k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "-n", "g", "--timeout=90s")
    pod = k.kjson("get", "pods", "-n", "g")["items"][0]
    assert pod["metadata"]["annotations"]["serving.ketch.io/grpc-port"]
    md = {**{k_.lower(): v for k_, v in k.headers.items()}, "x-ketch-namespace": "g"}
    c = tg.InferenceServerClient(f"127.0.0.1:{k.env['KETCH_SERVING_GRPC_PORT']}")
    assert c.is_server_live(headers=md) and c.is_model_ready("iris", headers=md)
    assert c.get_model_metadata("iris", headers=md).name == "iris"
    x, _ = iris()
    i = tg.InferInput("input-0", [3, 4], "FP32")
    i.set_data_from_numpy(x[:3].astype(np.float32))
    r = c.infer("iris", [i], headers=md)
    assert r.as_numpy("output-0").tolist() == model.predict(x[:3]).tolist()
    # the namespace from a host of the InferenceService's form instead
    r = c.infer("iris", [i], headers={**{k_.lower(): v for k_, v in k.headers.items()}, "host": "iris.g.localhost"})
    assert r.as_numpy("output-0").tolist() == model.predict(x[:3]).tolist()
    # errors keep their gRPC status: an unknown InferenceService, a bad input from the model server
    with pytest.raises(tg.InferenceServerException) as e:
        c.infer("nope", [i], headers=md)
    assert e.value.status() == str(grpc.StatusCode.NOT_FOUND)
    bad = tg.InferInput("input-0", [1, 5], "FP32")
    bad.set_data_from_numpy(np.ones((1, 5), dtype=np.float32))
    with pytest.raises(tg.InferenceServerException) as e:
        c.infer("iris", [bad], headers=md)
    assert e.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    if k.token:  # once ketch has tokens, a call without one is refused
        with pytest.raises(tg.InferenceServerException) as e:
            c.infer("iris", [i], headers={"x-ketch-namespace": "g"})
        assert e.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
