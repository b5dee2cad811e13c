"""Shared storage by URL: ketch started with ``KETCH_ARTIFACTS=s3://...`` against moto's S3 server on
loopback. A fan-out pipeline submitted with the real kfp SDK keeps its artifacts as objects in the bucket
(checked with boto3, not through ketch), its run and lineage name s3:// URIs, task Pods reach the store
through the endpoint and the credentials Secret ketch gives them, Pod logs are archived there and
``kubectl logs`` reads them back once the local copy is gone, and an InferenceService serves a model
from the same store."""

import os
import shutil
import subprocess
import sys
import time
from typing import List  # noqa: UP035 - kfp reads the annotation

import httpx
import psutil
import pytest

from conftest import free_port, make_ketch, wait_for
from serving_helpers import IRIS_ROW, train_sklearn

pytest.importorskip("moto")
pytest.importorskip("s3fs")
kfp = pytest.importorskip("kfp")
from kfp import dsl  # noqa: E402
from kfp.dsl import Dataset, Input, Metrics, Model, Output, OutputPath  # noqa: E402

BUCKET = "ketch-store"
PREFIX = "team-a"


@pytest.fixture(scope="module")
def moto_url():
    """moto's S3 in server mode, as its own process on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), timeout=30, what="moto server")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _up(url: str) -> bool:
    try:
        httpx.get(url, timeout=0.5)
        return True
    except httpx.HTTPError:
        return False


def s3_client(url: str):
    import boto3

    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


@pytest.fixture(scope="module")
def k(tmp_path_factory, moto_url):
    """ketch with its artifacts in the moto bucket. The endpoint is given only as KETCH_S3_ENDPOINT_URL,
    which the kubelet does not pass on to Pods (no KETCH_* variable reaches one): a task or predictor
    reaches the store only through what its controller put in its spec."""
    assert "AWS_ENDPOINT_URL" not in os.environ and "S3_ENDPOINT" not in os.environ
    s3_client(moto_url).create_bucket(Bucket=BUCKET)
    env = {"KETCH_ARTIFACTS": f"s3://{BUCKET}/{PREFIX}/", "KETCH_S3_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    ketch = make_ketch(tmp_path_factory.mktemp("s3"), env=env).start()
    try:
        yield ketch
    finally:
        ketch.stop()
    # A clean stop leaves no Pod process behind. Here it once did: ending the predictor made the serving
    # controller replace it while the kubelet was still archiving logs, and the replacement was started
    # after the kubelet had listed what to end (the kubelet now starts nothing once it is stopping).
    left = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])
            if str(ketch.home) in " ".join(p.info["cmdline"] or [])]
    assert not left, left


@dsl.component
def make_part(i: int, part: Output[Dataset]) -> None:
    with open(part.path, "w") as f:
        f.write(f"row-{i}\n" * (i + 1))
    part.metadata["rows"] = i + 1


@dsl.component
def join(parts: Input[List[Dataset]], merged: Output[Dataset], model: Output[Model], metrics: Output[Metrics]) -> int:  # noqa: UP006
    import os

    text = "".join(open(p.path).read() for p in sorted(parts, key=lambda p: p.metadata["rows"]))
    with open(merged.path, "w") as f:
        f.write(text)
    os.makedirs(model.path)
    with open(os.path.join(model.path, "weights.txt"), "w") as f:
        f.write(f"{len(parts)} parts")
    metrics.log_metric("rows", text.count("\n"))
    print(f"joined {len(parts)} parts from {[p.uri for p in parts]}")
    return text.count("\n")


@dsl.container_component
def count_lines(data: Input[Dataset], n: OutputPath(str), where: OutputPath(str)):
    return dsl.ContainerSpec(image="python:3.11", command=["sh", "-c", 'mkdir -p "$(dirname "$1")" "$(dirname "$3")" && '
                             'wc -l < "$0" | tr -d " " > "$1" && printf %s "$2" > "$3"'], args=[data.path, n, data.uri, where])


@dsl.pipeline
def fan_out() -> int:
    with dsl.ParallelFor([0, 1, 2, 3]) as i:
        p = make_part(i=i)
    j = join(parts=dsl.Collected(p.outputs["part"]))
    count_lines(data=j.outputs["merged"])
    return j.outputs["Output"]


def test_fan_out_pipeline_artifacts_live_in_s3(k, moto_url):
    c = k.kfp_client()
    rid = c.create_run_from_pipeline_func(fan_out, enable_caching=False).run_id
    wait_for(lambda: c.get_run(rid).state in ("SUCCEEDED", "FAILED"), timeout=120, interval=0.2, what="the run to end")
    raw = k.http().get(f"/apis/v2beta1/runs/{rid}").json()
    assert raw["state"] == "SUCCEEDED", (raw.get("error"), k.log()[-3000:])
    assert raw["pipeline_outputs"]["parameters"] == {"Output": 10}
    root = f"s3://{BUCKET}/{PREFIX}/pipelines/{rid}/"
    details = [t for t in raw["run_details"]["task_details"] if t.get("pod_name")]  # the tasks that ran as Pods
    outs = [a for t in details for arts in (t.get("artifacts") or {}).get("outputs", {}).values() for a in arts]
    assert len(outs) == 4 + 3 and all(a["uri"].startswith(root) for a in outs), [a["uri"] for a in outs]

    # the objects themselves, read from the bucket with boto3
    s3 = s3_client(moto_url)
    keys = {o["Key"]: o for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/pipelines/{rid}/")["Contents"]}

    def body(uri: str) -> str:
        return s3.get_object(Bucket=BUCKET, Key=uri[len(f"s3://{BUCKET}/"):])["Body"].read().decode()

    parts = sorted((a for a in outs if a["name"] == "part"), key=lambda a: a["metadata"]["rows"])
    assert [body(a["uri"]) for a in parts] == [f"row-{i}\n" * (i + 1) for i in range(4)]
    by_name = {a["name"]: a for a in outs}
    assert body(by_name["merged"]["uri"]) == "".join(f"row-{i}\n" * (i + 1) for i in range(4))
    assert body(by_name["model"]["uri"] + "/weights.txt") == "4 parts"  # a directory artifact: objects below its URI
    assert by_name["metrics"]["metadata"]["rows"] == 10
    assert {by_name["merged"]["uri"][len(f"s3://{BUCKET}/"):], by_name["model"]["uri"][len(f"s3://{BUCKET}/"):] + "/weights.txt"} <= set(keys)
    # the join task was handed s3:// URIs for its inputs (and read their content through local staged copies)
    joined = next(t for t in details if t["task_name"] == "join")
    ins = joined["artifacts"]["inputs"]["parts"]
    assert len(ins) == 4 and all(a["uri"].startswith(root) for a in ins)
    counted = next(t for t in details if t["task_name"] == "count-lines")
    assert counted["parameters"]["outputs"]["n"].strip() == "10"  # the container component read a staged copy
    assert counted["parameters"]["outputs"]["where"] == by_name["merged"]["uri"]  # ... and was told the store's URI

    # lineage (MLMD's view): the same s3:// URIs, and who produced and consumed them
    arts = k.http().get("/apis/v2beta1/artifacts", params={"run_id": rid}).json()["artifacts"]
    assert arts and all(a["uri"].startswith(root) for a in arts)
    merged = next(a for a in arts if a["uri"] == by_name["merged"]["uri"])
    lin = k.http().get(f"/apis/v2beta1/artifacts/{merged['artifact_id']}").json()
    assert [e["task_name"] for e in lin["produced_by"]] == ["join"] and [e["task_name"] for e in lin["consumed_by"]] == ["count-lines"]
    # the dashboard's artifact view reads the object from the store
    r = k.http().get(f"/ui/artifacts/{rid}/{by_name['merged']['id']}")
    assert r.status_code == 200 and r.text.startswith("row-0\nrow-1\n"), r.text

    # the task Pod got the endpoint as a value and the credentials from the namespace's Secret, never inline
    pod = k.kjson("get", "pod", "-n", "kubeflow", joined["pod_name"])
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["AWS_ENDPOINT_URL"]["value"] == moto_url
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "ketch-artifact-store"
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    secret = k.kjson("get", "secret", "-n", "kubeflow", "ketch-artifact-store")
    assert sorted(secret["data"]) == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]

    # the Pod's log was archived in the store at its end; with the local copy gone, kubectl logs reads it back
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    log_key = f"{PREFIX}/logs/kubeflow/{name}/{uid}/main/0.log"
    wait_for(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix=log_key).get("KeyCount"), timeout=10, what="the archived log")
    assert "joined 4 parts" in s3.get_object(Bucket=BUCKET, Key=log_key)["Body"].read().decode()
    shutil.rmtree(k.home / "logs" / "kubeflow" / name)
    out = k.kubectl("logs", "-n", "kubeflow", name).stdout
    assert f"joined 4 parts from ['{root}" in out
    assert "joined 4 parts" in k.kubectl("logs", "-n", "kubeflow", name, "--tail=5").stdout


ISVC = """apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  namespace: default
spec:
  predictor:
    sklearn:
      storageUri: s3://{bucket}/models/iris/v1
"""


def test_inference_service_serves_a_model_from_s3(k, moto_url, tmp_path):
    model = train_sklearn(tmp_path / "model")
    s3_client(moto_url).upload_file(str(tmp_path / "model" / "model.joblib"), BUCKET, "models/iris/v1/model.joblib")
    k.kubectl("apply", "-f", "-", input=ISVC.format(bucket=BUCKET))
    t0 = time.time()
    r = k.kubectl("wait", "--for=condition=Ready", "inferenceservice/iris", "--timeout=90s", check=False)
    assert r.returncode == 0, (r.stderr, k.kubectl("get", "pods", "-o", "wide").stdout, k.log()[-3000:])
    url = k.kubectl("get", "inferenceservice", "iris", "-o", "jsonpath={.status.url}").stdout
    got = httpx.post(f"{url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, headers=k.headers, timeout=30).json()
    assert got == {"predictions": model.predict([IRIS_ROW]).tolist()}
    pod = k.kjson("get", "pods", "-l", "serving.kserve.io/inferenceservice=iris")["items"][0]
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["AWS_ENDPOINT_URL"]["value"] == moto_url and "secretKeyRef" in env["AWS_ACCESS_KEY_ID"]["valueFrom"]
    assert time.time() - t0 < 90


def test_model_storage_reads_minio_uris_at_the_configured_endpoint(moto_url, tmp_path, monkeypatch):
    """The model server's download (serving/modelserver/storage.py) opens URIs through storage.filesystem,
    as the launcher and the dashboard do: ``minio://`` (KFP's name for its store) is S3 at the configured
    endpoint, which plain fsspec knows nothing of."""
    from ketch.serving.modelserver import storage as model_storage

    s3 = s3_client(moto_url)
    s3.create_bucket(Bucket="models-minio")
    s3.put_object(Bucket="models-minio", Key="models/minio/v1/model.txt", Body=b"weights")
    for k_, v in {"KETCH_S3_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                  "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k_, v)
    got = model_storage.fetch("minio://models-minio/models/minio/v1/", str(tmp_path / "dest"))
    assert (tmp_path / "dest" / "model.txt").read_bytes() == b"weights" and got == str(tmp_path / "dest")
