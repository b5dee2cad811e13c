"""Kubeflow Model Registry on ketch: the real ``model-registry`` client against /api/model_registry/v1 on
ketch's port, the objects it makes seen with kubectl, and the REST errors."""

from __future__ import annotations

import warnings

import httpx
import pytest

from conftest import wait_for

mr = pytest.importorskip("model_registry")
warnings.filterwarnings("ignore")


@pytest.fixture(scope="module")
def registry(shared_ketch):
    from model_registry import ModelRegistry

    return ModelRegistry(server_address="http://127.0.0.1", port=shared_ketch.port, author="ada", is_secure=False, user_token=shared_ketch.token)


def test_register_find_list_and_update_with_the_client(registry, shared_ketch):
    from model_registry.types import ModelVersionState

    rm = registry.register_model("iris classifier", "s3://models/iris/v1/model.joblib", model_format_name="sklearn",
                                 model_format_version="1", version="v1", version_description="first cut",
                                 metadata={"accuracy": 0.97, "framework": "sklearn", "epochs": 3, "tuned": False})
    assert rm.name == "iris classifier" and rm.id and rm.owner == "ada"
    registry.register_model("iris classifier", "s3://models/iris/v2/model.joblib", model_format_name="sklearn",
                            model_format_version="1", version="v2", storage_key="aws-conn")
    assert registry.get_registered_model("iris classifier").id == rm.id
    v1 = registry.get_model_version("iris classifier", "v1")
    assert v1.description == "first cut" and v1.author == "ada" and v1.registered_model_id == rm.id
    assert v1.custom_properties == {"accuracy": 0.97, "framework": "sklearn", "epochs": 3, "tuned": False}
    art = registry.get_model_artifact("iris classifier", "v2")
    assert art.uri == "s3://models/iris/v2/model.joblib" and art.model_format_name == "sklearn" and art.storage_key == "aws-conn"
    assert [v.name for v in registry.get_model_versions("iris classifier")] == ["v1", "v2"]
    with pytest.raises(Exception, match="already exists"):
        registry.register_model("iris classifier", "s3://x", model_format_name="sklearn", model_format_version="1", version="v2")
    v1.state = ModelVersionState.ARCHIVED
    registry.update(v1)
    assert registry.get_model_version("iris classifier", "v1").state == ModelVersionState.ARCHIVED
    assert registry.get_registered_model("no such model") is None
    # the registry's objects are Kubernetes objects too
    names = {o["spec"]["name"] for o in shared_ketch.kjson("get", "modelversions", "-n", "kubeflow")["items"]}
    assert {"v1", "v2"} <= names
    assert "iris classifier" in shared_ketch.kubectl("get", "registeredmodels", "-n", "kubeflow").stdout


def test_rest_paging_ordering_and_errors(shared_ketch, registry):
    for i in range(3):
        registry.register_model(f"paged-{i}", f"file:///m/{i}", model_format_name="onnx", model_format_version="1", version="1")
    http = shared_ketch.http()
    base = "/api/model_registry/v1"
    first = http.get(f"{base}/registered_models", params={"pageSize": 2, "orderBy": "CREATE_TIME", "sortOrder": "DESC"}).json()
    assert first["size"] == 2 and first["nextPageToken"]
    rest = http.get(f"{base}/registered_models", params={"pageSize": 2, "orderBy": "CREATE_TIME", "sortOrder": "DESC",
                                                           "nextPageToken": first["nextPageToken"]}).json()
    names = [m["name"] for m in first["items"] + rest["items"]]
    assert names[:3] == ["paged-2", "paged-1", "paged-0"] and len(names) == len(set(names))
    r = http.get(f"{base}/registered_models/999999")
    assert r.status_code == 404 and "not found" in r.json()["message"]
    r = http.get(f"{base}/registered_models/abc")
    assert r.status_code == 400 and "must be a number" in r.json()["message"]
    r = http.post(f"{base}/registered_models", json={"description": "no name"})
    assert r.status_code == 400 and "name is required" in r.json()["message"]
    r = http.post(f"{base}/registered_models", json={"name": "paged-0"})
    assert r.status_code == 409
    mv = http.get(f"{base}/model_version", params={"name": "1", "parentResourceId": first["items"][0]["id"]}).json()
    r = http.post(f"{base}/model_versions/{mv['id']}/artifacts", json={"artifactType": "bogus", "name": "x"})
    assert r.status_code == 400 and "artifactType" in r.json()["message"]
    doc = http.post(f"{base}/model_versions/{mv['id']}/artifacts", json={"artifactType": "doc-artifact", "name": "card", "uri": "file:///card.md"})
    assert doc.status_code == 201
    kinds = {a["artifactType"] for a in http.get(f"{base}/model_versions/{mv['id']}/artifacts").json()["items"]}
    assert kinds == {"model-artifact", "doc-artifact"}


def test_inference_service_serves_a_registered_model(shared_ketch, registry, tmp_path):
    """KServe's model-registry:// storage URI: the predictor fetches the version's artifact URI."""
    from serving_helpers import IRIS_ROW, train_sklearn

    model = train_sklearn(tmp_path / "lr", "lr")
    registry.register_model("iris", str(tmp_path / "lr"), model_format_name="sklearn", model_format_version="1", version="v1")
    k = shared_ketch
    k.kubectl("apply", "-f", "-", input=(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: from-registry, namespace: default}\n"
        "spec:\n  predictor:\n    model:\n      modelFormat: {name: sklearn}\n      storageUri: model-registry://iris/v1\n"))
    k.kubectl("wait", "--for=condition=Ready", "inferenceservice/from-registry", "--timeout=120s", timeout=130)
    url = k.kubectl("get", "inferenceservice", "from-registry", "-o", "jsonpath={.status.url}").stdout
    r = httpx.post(f"{url}/v1/models/from-registry:predict", json={"instances": [IRIS_ROW]}, timeout=30, headers=k.headers)
    assert r.json() == {"predictions": model.predict([IRIS_ROW]).tolist()}
    # a version the registry does not have: the predictor fails to load and says why
    k.kubectl("apply", "-f", "-", input=(
        "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: no-version, namespace: default}\n"
        "spec:\n  predictor:\n    model:\n      modelFormat: {name: sklearn}\n      storageUri: model-registry://iris/v9\n"))

    def failed_with_reason():
        pods = k.kjson("get", "pods", "-l", "serving.kserve.io/inferenceservice=no-version")["items"]
        return pods and "has no version 'v9'" in k.kubectl("logs", pods[0]["metadata"]["name"], check=False).stdout

    wait_for(failed_with_reason, timeout=90, what="the predictor's log naming the missing version")
