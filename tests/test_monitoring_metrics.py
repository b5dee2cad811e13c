"""``/metrics`` on ketch's port, read with prometheus_client's own parser through the fixture's credentials:
kube-apiserver's request series by verb/resource/code, watches, controller-runtime's work queue and
reconcile series, serving per model (the gateway's and, federated, the model servers' KServe names),
pipelines and tuning; and the series move under load."""


import json
import threading

import pytest
import yaml
from kfp import compiler, dsl
from prometheus_client.parser import text_string_to_metric_families

from conftest import make_ketch, wait_for
from serving_helpers import IRIS_ROW, train_sklearn


@dsl.component(base_image="python:3.11")
def one() -> int:
    return 1


@dsl.pipeline
def single() -> int:
    return one().output


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kk = make_ketch(tmp_path_factory.mktemp("metrics"), env={"KETCH_SERVING_SCRAPE_INTERVAL": "0.5"}).start()
    try:
        yield kk
    finally:
        kk.stop()


def scrape(k) -> dict:
    """sample name -> {sorted label items: value}"""
    with k.http() as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text[:200]
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(m: dict, sample: str, **labels) -> float:
    """The sum of ``sample``'s values whose labels include ``labels``."""
    return sum(v for ls, v in m.get(sample, {}).items() if all((key, val) in ls for key, val in labels.items()))


def test_apiserver_series_and_watches(k):
    k.kubectl("get", "configmaps")
    before = scrape(k)
    assert {"apiserver_request_total", "apiserver_request_duration_seconds_bucket", "apiserver_current_inflight_requests",
            "process_cpu_seconds_total", "workqueue_depth", "workqueue_adds_total", "controller_runtime_reconcile_total"} <= set(before)
    lists = value(before, "apiserver_request_total", verb="LIST", resource="configmaps", code="200")
    with k.http() as c:
        for i in range(5):
            assert c.get("/api/v1/namespaces/default/configmaps").status_code == 200
            c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": f"cm{i}"}, "data": {"a": "b"}}).raise_for_status()
        assert c.get("/api/v1/namespaces/default/configmaps/nope").status_code == 404
        # a watch is long-running while open, and counted when it ends
        opened = threading.Event()

        def watch():
            with k.http() as wc, wc.stream("GET", "/api/v1/namespaces/default/configmaps", params={"watch": "true", "timeoutSeconds": "2"}) as r:
                opened.set()
                for _ in r.iter_lines():
                    pass

        t = threading.Thread(target=watch)
        t.start()
        opened.wait(10)
        during = wait_for(lambda: (m := scrape(k)) and value(m, "apiserver_longrunning_requests", verb="WATCH", resource="configmaps") == 1 and m,
                          timeout=10, what="an open watch")
        t.join(15)
    after = scrape(k)
    assert value(after, "apiserver_request_total", verb="LIST", resource="configmaps", code="200", scope="namespace") == lists + 5
    assert value(after, "apiserver_request_total", verb="POST", resource="configmaps", code="201") >= 5
    assert value(after, "apiserver_request_total", verb="GET", resource="configmaps", code="404", scope="resource") == 1
    assert value(after, "apiserver_request_duration_seconds_count", verb="LIST", resource="configmaps") >= lists + 5
    assert value(after, "apiserver_longrunning_requests", verb="WATCH", resource="configmaps") == 0 < value(during, "apiserver_longrunning_requests")
    assert value(after, "apiserver_request_total", verb="WATCH", resource="configmaps") >= 1
    # kubectl's requests are counted the same way
    k.kubectl("get", "pods", "-A")
    assert value(scrape(k), "apiserver_request_total", verb="LIST", resource="pods", scope="cluster") >= 1


def test_paths_anyone_sends_make_no_new_series(k):
    """The request series are labelled from the path, and refused requests are counted too: paths that
    name no served group, resource or subresource, with or without a token, must not each make a series
    (an unauthenticated client could grow /metrics, and ketch's memory, without bound)."""
    import uuid

    def series(m: dict) -> int:
        return len(m.get("apiserver_request_total", {})) + len(m.get("apiserver_request_duration_seconds_count", {}))

    paths = lambda tag: [f"/api/v1/{tag}", f"/apis/{tag}.example.com/v1/things", f"/apis/kubeflow.org/{tag}/tfjobs",  # noqa: E731
                         f"/api/v1/namespaces/default/configmaps/x/{tag}", f"/apis/v2beta1/runs/{tag}"]
    with k.http() as c, k.http(auth=False) as anon:
        for p in paths("warm"):
            c.get(p), anon.get(p)
        before = scrape(k)
        for _ in range(20):
            tag = uuid.uuid4().hex[:10]
            for p in paths(tag):
                c.get(p)
                anon.get(p)
    after = scrape(k)
    assert series(after) == series(before), "no new series from unknown paths"
    shown = json.dumps(list(after.get("apiserver_request_total", {})))
    assert "example.com" not in shown and "warm" not in shown
    # a served resource's subresource keeps its labels
    assert value(after, "apiserver_request_total", resource="configmaps", code="404") >= 1


def test_controller_workqueues_move(k):
    before = scrape(k)
    for i in range(3):
        k.kubectl("create", "namespace", f"wq{i}")
    after = wait_for(lambda: (m := scrape(k)) and value(m, "workqueue_adds_total", name="namespace") >= value(before, "workqueue_adds_total", name="namespace") + 3 and m,
                     timeout=10, what="namespace controller adds")
    assert value(after, "workqueue_queue_duration_seconds_count", name="namespace") > value(before, "workqueue_queue_duration_seconds_count", name="namespace")
    assert value(after, "controller_runtime_reconcile_total", controller="namespace") > value(before, "controller_runtime_reconcile_total", controller="namespace")
    assert ("name", "inferenceservice") in {ls[0] for ls in after["workqueue_depth"]}
    assert "controller_runtime_reconcile_errors_total" in after and "workqueue_retries_total" in after


def test_serving_series_per_model(k, tmp_path):
    train_sklearn(tmp_path / "lr")
    k.kubectl("apply", "-f", "-", input=f"""apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
spec:
  predictor:
    sklearn:
      storageUri: {tmp_path / 'lr'}
""")
    k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "--timeout=90s")
    with k.http() as c:
        for _ in range(7):
            assert c.post("/serving/default/iris/v1/models/iris:predict", json={"instances": [IRIS_ROW]}).status_code == 200
    m = scrape(k)
    assert value(m, "revision_request_count_total", namespace="default", inferenceservice="iris", component="predictor",
                 revision="iris-predictor-00001", response_code="200") == 7
    assert value(m, "revision_request_latencies_seconds_count", inferenceservice="iris") == 7
    # the model server's own KServe series, federated with the replica's place
    m = wait_for(lambda: (m := scrape(k)) and value(m, "ketch_model_requests_total", inferenceservice="iris", code="200") >= 7 and m,
                 timeout=15, what="federated model server series")
    assert value(m, "request_predict_seconds_count", model_name="iris", namespace="default", revision="iris-predictor-00001") >= 0
    assert value(m, "ketch_model_request_duration_seconds_count", inferenceservice="iris", component="predictor") >= 7
    # the kubelet's container usage (cAdvisor's names) for the predictor Pod
    pod = k.kjson("get", "pods", "-l", "serving.kserve.io/inferenceservice=iris")["items"][0]["metadata"]["name"]
    assert value(m, "container_memory_working_set_bytes", namespace="default", pod=pod, container="kserve-container") > 20e6
    assert value(m, "container_cpu_usage_seconds_total", namespace="default", pod=pod, container="kserve-container") > 0.1


def test_pipeline_and_tuning_series(k, tmp_path):
    pkg = tmp_path / "single.yaml"
    compiler.Compiler().compile(single, str(pkg))
    k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "pipelines.kubeflow.org/v1", "kind": "PipelineRun",
                                                    "metadata": {"name": "m1", "namespace": "default"},
                                                    "spec": {"pipelineSpec": yaml.safe_load(pkg.read_text())}}))
    wait_for(lambda: k.kjson("get", "pipelinerun", "m1").get("status", {}).get("state") == "SUCCEEDED", timeout=90, what="run")
    m = wait_for(lambda: (m := scrape(k)) and value(m, "ketch_pipeline_task_duration_seconds_count", state="SUCCEEDED") >= 1 and m,
                 timeout=10, what="task duration observed")
    assert value(m, "ketch_pipeline_runs", namespace="default", state="SUCCEEDED") == 1
    assert value(m, "ketch_pipeline_task_duration_seconds_count", component="comp-one") == 1
    k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": "e1"}, "spec": {
        "objective": {"type": "minimize", "objectiveMetricName": "loss"}, "algorithm": {"algorithmName": "random"},
        "parallelTrialCount": 1, "maxTrialCount": 1,
        "parameters": [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}],
        "trialTemplate": {"primaryContainerName": "training", "trialParameters": [{"name": "x", "reference": "x"}],
                          "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {
                              "restartPolicy": "Never", "containers": [{"name": "training", "image": "python",
                                                                        "command": ["python", "-c", "print('loss=0.25 x=${trialParameters.x}')"]}]}}}}}}}))
    m = wait_for(lambda: (m := scrape(k)) and value(m, "ketch_katib_trials", experiment="e1", state="Succeeded") == 1 and m,
                 timeout=60, what="a succeeded trial")
    assert value(m, "ketch_katib_experiment_best_objective", experiment="e1", metric="loss") == 0.25


def test_grafana_dashboard_queries_series_ketch_exports(k):
    """Every metric the shipped dashboard queries is on /metrics (after this module's load), except the
    ones only a feature's objects create, which their own tests scrape (listed with the test that does)."""
    import pathlib
    import re

    dash = json.loads((pathlib.Path(__file__).resolve().parents[1] / "docs" / "monitoring" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    bare = [re.sub(r"by \([^)]*\)|\{[^}]*\}|\[[^\]]*\]", " ", e) for e in exprs]
    names = {n for e in bare for n in re.findall(r"[a-z_]+", e) if "_" in n and n != "histogram_quantile"}
    elsewhere = {
        "ketch_drift_p_value", "ketch_drift_threshold", "ketch_drift_is_drift", "ketch_outlier_instances_total",  # test_serving_monitoring
        "ketch_inferencegraph_node_duration_seconds_bucket",  # test_serving_graph
        "kserve_logger_events_dropped_total",  # test_serving_payloads (on the model server)
        "ketch_model_batch_size_bucket",  # test_serving_modelserver (batching on)
    }
    assert {"apiserver_request_total", "revision_request_count_total", "ketch_katib_trials"} <= names
    got = set(scrape(k))
    missing = sorted(n for n in names - elsewhere if n not in got)
    assert not missing, missing
