"""storageUri schemes against real servers on loopback: S3 (moto's server), http(s) archives, pvc://,
file:// and plain paths; a model is fetched once per revision and the fetch is all-or-nothing."""

from __future__ import annotations

import io
import os
import tarfile

import httpx

from serving_helpers import IRIS_ROW, ModelServer, train_sklearn


def test_s3_model_served(tmp_path, s3, monkeypatch):
    import boto3

    train_sklearn(tmp_path / "src")
    for k, v in s3.items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"])
    client.create_bucket(Bucket="models")
    client.upload_file(str(tmp_path / "src" / "model.joblib"), "models", "iris/v1/model.joblib")
    client.put_object(Bucket="models", Key="iris/v10/model.joblib", Body=b"not this one")  # a sibling prefix
    cache = tmp_path / "cache" / "rev1"
    s = ModelServer(tmp_path, "--model-name", "iris", "--storage-uri", "s3://models/iris/v1", "--model-dir", str(cache), env=s3).wait_ready()
    try:
        assert httpx.post(f"{s.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}).json() == {"predictions": [1]}
        assert sorted(os.listdir(cache)) == [".ketch-fetched", "model.joblib"]
    finally:
        s.stop()
    # fetched once per revision: a second replica reuses the cache even with the bucket gone
    client.delete_object(Bucket="models", Key="iris/v1/model.joblib")
    s2 = ModelServer(tmp_path, "--model-name", "iris", "--storage-uri", "s3://models/iris/v1", "--model-dir", str(cache), env=s3).wait_ready()
    s2.stop()


def test_s3_missing_prefix_fails_cleanly(tmp_path, s3, monkeypatch):
    import boto3

    boto3.client("s3", endpoint_url=s3["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket="empty")
    cache = tmp_path / "cache"
    s = ModelServer(tmp_path, "--model-name", "iris", "--storage-uri", "s3://empty/nothing", "--model-dir", str(cache), env=s3)
    assert s.proc.wait(30) == 1
    assert "no objects under that prefix" in s.output()
    assert not cache.exists()  # nothing half-written


def test_http_tar_gz_archive(tmp_path, http_server):
    root, url = http_server
    train_sklearn(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(tmp_path / "src" / "model.joblib", arcname="model.joblib")
    (root / "iris.tar.gz").write_bytes(buf.getvalue())
    s = ModelServer(tmp_path, "--model-name", "iris", "--storage-uri", f"{url}/iris.tar.gz", "--model-dir", str(tmp_path / "c")).wait_ready()
    try:
        assert httpx.post(f"{s.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}).json() == {"predictions": [1]}
    finally:
        s.stop()


def test_local_file_and_pvc(tmp_path):
    train_sklearn(tmp_path / "vol" / "claim1" / "models" / "iris", filename="model.pkl")
    for uri, env in ((f"file://{tmp_path}/vol/claim1/models/iris", {}), ("pvc://claim1/models/iris", {"KETCH_PVC_ROOT": str(tmp_path / "vol")}),
                     (str(tmp_path / "vol" / "claim1" / "models" / "iris" / "model.pkl"), {})):
        s = ModelServer(tmp_path, "--model-name", "iris", "--storage-uri", uri, "--model-dir", str(tmp_path / "unused"), env=env).wait_ready()
        try:
            assert httpx.post(f"{s.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}).json() == {"predictions": [1]}
        finally:
            s.stop()
        assert not (tmp_path / "unused").exists()  # used in place, not copied
