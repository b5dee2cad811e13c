"""KFP pipelines on a real ketch server: kfp.Client against the v2beta1 REST API, task Pods run by the
local kubelet, kubectl on the PipelineRun objects, the `ketch run` CLI, and restarts."""

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import kfp
import pytest
import yaml
from kfp import compiler, dsl, kubernetes
from kfp.dsl import Dataset, Input, Output
from kfp_server_api.exceptions import ApiException

from conftest import SRC, make_ketch, wait_for

warnings.filterwarnings("ignore", category=FutureWarning)
FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


@dsl.component
def make(n: int, out: Output[Dataset]) -> int:
    with open(out.path, "w") as f:
        f.write("x" * n)
    return n


@dsl.component
def measure(data: Input[Dataset]) -> int:
    return len(open(data.path).read())


@dsl.pipeline
def two_step(n: int = 3) -> int:
    m = make(n=n)
    return measure(data=m.outputs["out"]).output


@dsl.component
def sleeper(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "woke"


@dsl.pipeline
def sleepy(seconds: float = 60.0):
    sleeper(seconds=seconds).set_caching_options(False)


@dsl.component
def needs_file(path: str) -> str:
    return open(path).read()


@dsl.pipeline
def fragile(path: str):
    needs_file(path=path).set_caching_options(False)


@dsl.component
def show_env() -> str:
    import os

    return f"{os.environ.get('PLAIN')}|{os.environ.get('FROM_SECRET')}|{os.environ.get('POD_TEAM')}"


@dsl.pipeline
def with_platform():
    t = show_env().set_env_variable("PLAIN", "p1").set_cpu_limit("1").set_memory_limit("500M").set_caching_options(False)
    kubernetes.use_secret_as_env(t, secret_name="creds", secret_key_to_env={"token": "FROM_SECRET"})
    kubernetes.add_pod_label(t, "team", "ml")
    kubernetes.use_field_path_as_env(t, env_name="POD_TEAM", field_path="metadata.labels['team']")


def client(k) -> kfp.Client:
    return k.kfp_client()


def wait_run(c: kfp.Client, run_id: str, states=FINAL, timeout: float = 60):
    return wait_for(lambda: (r := c.get_run(run_id)).state in states and r, timeout=timeout, interval=0.1, what=f"run {run_id} in {states}")


def test_run_through_kfp_client_pods_artifacts_lineage(shared_ketch) -> None:
    c = client(shared_ketch)
    res = c.create_run_from_pipeline_func(two_step, arguments={"n": 7}, experiment_name="exp-a", run_name="first")
    run = wait_run(c, res.run_id)
    assert run.state == "SUCCEEDED", run
    assert run.display_name == "first"
    tasks = {t.display_name: t for t in run.run_details.task_details}
    assert tasks["make"].state == tasks["measure"].state == "SUCCEEDED"
    raw = shared_ketch.http().get(f"/apis/v2beta1/runs/{res.run_id}").json()
    assert raw["pipeline_outputs"]["parameters"] == {"Output": 7}
    details = {t["task_name"]: t for t in raw["run_details"]["task_details"]}
    art = details["make"]["artifacts"]["outputs"]["out"][0]
    assert Path(art["uri"]).read_text() == "x" * 7
    # every task was a Pod owned by the run
    pod = shared_ketch.kjson("get", "pod", "-n", "kubeflow", details["make"]["pod_name"])
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "PipelineRun"
    out = shared_ketch.kubectl("get", "pipelineruns", "-n", "kubeflow").stdout
    assert res.run_id in out and "SUCCEEDED" in out
    # lineage: what produced this dataset and what consumed it
    lin = shared_ketch.http().get(f"/apis/v2beta1/artifacts/{art['id']}").json()
    assert [e["task_name"] for e in lin["produced_by"]] == ["make"]
    assert [e["task_name"] for e in lin["consumed_by"]] == ["measure"]
    ex = shared_ketch.http().get("/apis/v2beta1/executions", params={"run_id": res.run_id}).json()["executions"]
    assert {e["task_name"] for e in ex} == {"make", "measure"}
    env = {**os.environ, "PYTHONPATH": str(SRC), "KETCH_TOKEN": shared_ketch.token}
    cli = subprocess.run([sys.executable, "-m", "ketch", "lineage", art["uri"], "--server", shared_ketch.url], capture_output=True, text=True, env=env, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "produced by" in cli.stdout and "task make" in cli.stdout and "consumed by" in cli.stdout and "task measure" in cli.stdout


def test_experiments_pipelines_versions_lists(shared_ketch, tmp_path: Path) -> None:
    c = client(shared_ketch)
    exp = c.create_experiment("exp-b", description="d")
    assert c.create_experiment("exp-b").experiment_id == exp.experiment_id  # get-or-create
    assert c.get_experiment(experiment_name="exp-b").experiment_id == exp.experiment_id
    pkg = tmp_path / "two.yaml"
    compiler.Compiler().compile(two_step, str(pkg))
    pl = c.upload_pipeline(str(pkg), pipeline_name="two-step-b")
    v2 = c.upload_pipeline_version(str(pkg), pipeline_version_name="v2", pipeline_id=pl.pipeline_id)
    assert c.list_pipeline_versions(pl.pipeline_id).total_size == 2
    assert c.get_pipeline_id("two-step-b") == pl.pipeline_id
    ids = [c.run_pipeline(experiment_id=exp.experiment_id, job_name=f"r{i}", pipeline_id=pl.pipeline_id, version_id=v2.pipeline_version_id,
                          params={"n": i + 1}).run_id for i in range(3)]
    for i, rid in enumerate(ids):
        run = wait_run(c, rid)
        assert run.state == "SUCCEEDED"
        assert run.pipeline_version_reference.pipeline_version_id == v2.pipeline_version_id
        assert shared_ketch.http().get(f"/apis/v2beta1/runs/{rid}").json()["pipeline_outputs"]["parameters"]["Output"] == i + 1
    page1 = c.list_runs(experiment_id=exp.experiment_id, page_size=2, sort_by="created_at desc")
    assert page1.total_size == 3 and len(page1.runs) == 2 and page1.next_page_token
    page2 = c.list_runs(experiment_id=exp.experiment_id, page_size=2, page_token=page1.next_page_token, sort_by="created_at desc")
    assert len(page2.runs) == 1
    f = json.dumps({"predicates": [{"operation": 1, "key": "display_name", "stringValue": "r1"}]})
    assert [r.run_id for r in c.list_runs(experiment_id=exp.experiment_id, filter=f).runs] == [ids[1]]
    c.archive_run(ids[0])
    assert c.get_run(ids[0]).storage_state == "ARCHIVED"
    c.delete_run(ids[0])
    assert c.list_runs(experiment_id=exp.experiment_id).total_size == 2
    c.archive_experiment(exp.experiment_id)
    assert c.get_experiment(experiment_id=exp.experiment_id).storage_state == "ARCHIVED"


def test_bad_input_is_refused_at_submission(shared_ketch, tmp_path: Path) -> None:
    c = client(shared_ketch)
    with pytest.raises(ApiException) as e:
        c.create_run_from_pipeline_func(two_step, arguments={"nope": 1})
    assert e.value.status == 400 and "nope" in e.value.body
    pkg = tmp_path / "bad.yaml"
    compiler.Compiler().compile(two_step, str(pkg))
    spec = yaml.safe_load(pkg.read_text())
    spec["deploymentSpec"]["executors"]["exec-measure"] = {"customJob": {}}
    r = shared_ketch.http().post("/apis/v2beta1/runs", json={"display_name": "bad", "pipeline_spec": spec})
    assert r.status_code == 400
    assert "measure" in r.json()["message"] and "customJob" in r.json()["message"]
    assert "bad" not in shared_ketch.kubectl("get", "pipelineruns", "-A").stdout.split()


def test_terminate_ends_running_pod_then_retry(shared_ketch, tmp_path: Path) -> None:
    c = client(shared_ketch)
    rid = c.create_run_from_pipeline_func(sleepy).run_id

    def running_pod():
        run = shared_ketch.http().get(f"/apis/v2beta1/runs/{rid}").json()
        ts = [t for t in run["run_details"]["task_details"] if t.get("pod_name")]
        if ts and ts[0]["state"] == "RUNNING":
            p = shared_ketch.kjson("get", "pod", "-n", "kubeflow", ts[0]["pod_name"])
            return p["metadata"]["name"] if p["status"].get("phase") == "Running" else None
        return None

    pod = wait_for(running_pod, timeout=30, what="task pod running")
    c.terminate_run(rid)
    assert c.get_run(rid).state in ("CANCELING", "CANCELED")
    run = wait_run(c, rid, {"CANCELED"}, timeout=30)
    assert run.state == "CANCELED"
    wait_for(lambda: shared_ketch.kubectl("get", "pod", "-n", "kubeflow", pod, check=False).returncode != 0, timeout=30, what="pod gone")

    # retry: a failed run runs its failed tasks again
    marker = tmp_path / "marker.txt"
    rid = c.create_run_from_pipeline_func(fragile, arguments={"path": str(marker)}).run_id
    run = wait_run(c, rid)
    assert run.state == "FAILED" and "needs-file" in run.error.message
    marker.write_text("here")
    shared_ketch.http().post(f"/apis/v2beta1/runs/{rid}:retry").raise_for_status()
    run = wait_run(c, rid)
    assert run.state == "SUCCEEDED"


def test_platform_spec_env_secret_resources(shared_ketch) -> None:
    shared_ketch.kubectl("create", "secret", "generic", "creds", "-n", "kubeflow", "--from-literal=token=s3cr3t")
    c = client(shared_ketch)
    rid = c.create_run_from_pipeline_func(with_platform).run_id
    run = wait_run(c, rid)
    assert run.state == "SUCCEEDED", run.error
    raw = shared_ketch.http().get(f"/apis/v2beta1/runs/{rid}").json()
    t = raw["run_details"]["task_details"][0]
    assert t["parameters"]["outputs"]["Output"] == "p1|s3cr3t|ml"
    pod = shared_ketch.kjson("get", "pod", "-n", "kubeflow", t["pod_name"])
    ctr = pod["spec"]["containers"][0]
    assert ctr["resources"]["limits"] == {"cpu": "1", "memory": "500M"}
    assert pod["metadata"]["labels"]["team"] == "ml"


def test_recurring_run_interval_and_disable(shared_ketch, tmp_path: Path) -> None:
    c = client(shared_ketch)
    exp = c.create_experiment("exp-rr")
    pkg = tmp_path / "two.yaml"
    compiler.Compiler().compile(two_step, str(pkg))
    rr = c.create_recurring_run(experiment_id=exp.experiment_id, job_name="every-sec", interval_second=1, max_concurrency=1,
                                pipeline_package_path=str(pkg), params={"n": 2}, no_catchup=True)
    assert rr.status == "ENABLED" and rr.trigger.periodic_schedule.interval_second == "1"

    def runs():
        return [r for r in (c.list_runs(experiment_id=exp.experiment_id, page_size=100).runs or []) if r.recurring_run_id == rr.recurring_run_id]

    got = wait_for(lambda: len(runs()) >= 2 and runs(), timeout=40, what="two scheduled runs")
    assert all(r.display_name.startswith("every-sec-") for r in got)
    c.disable_recurring_run(rr.recurring_run_id)
    assert c.get_recurring_run(rr.recurring_run_id).status == "DISABLED"
    time.sleep(0.5)
    n = len(runs())
    time.sleep(2.5)
    assert len(runs()) == n
    assert c.list_recurring_runs(experiment_id=exp.experiment_id).total_size == 1
    for r in runs():
        wait_run(c, r.run_id)
    c.delete_recurring_run(rr.recurring_run_id)


def test_kubectl_apply_pipelinerun(shared_ketch, tmp_path: Path) -> None:
    pkg = tmp_path / "two.yaml"
    compiler.Compiler().compile(two_step, str(pkg))
    obj = {"apiVersion": "pipelines.kubeflow.org/v1", "kind": "PipelineRun", "metadata": {"name": "applied", "namespace": "default"},
           "spec": {"pipelineSpec": yaml.safe_load(pkg.read_text()), "runtimeConfig": {"parameters": {"n": 4}}}}
    shared_ketch.kubectl("apply", "-f", "-", input=json.dumps(obj))
    done = wait_for(lambda: (o := shared_ketch.kjson("get", "pipelinerun", "applied", "-n", "default")).get("status", {}).get("state") in FINAL and o,
                    timeout=60, what="applied run")
    assert done["status"]["state"] == "SUCCEEDED"
    assert done["status"]["outputs"]["parameters"] == {"Output": 4}


PIPELINE_PY = '''
from kfp import dsl

@dsl.component
def double(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return 2 * x

@dsl.pipeline
def doubling(x: int = 1) -> int:
    return double(x=double(x=x).output).output
'''


def test_ketch_run_cli(shared_ketch, tmp_path: Path) -> None:
    src = tmp_path / "doubling.py"
    src.write_text(PIPELINE_PY)
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONWARNINGS": "ignore", "KETCH_TOKEN": shared_ketch.token}
    r = subprocess.run([sys.executable, "-m", "ketch", "run", str(src), "-p", "x=5", "--server", shared_ketch.url], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCEEDED" in r.stdout and '"Output": 20' in r.stdout
    assert "double-2" in r.stdout  # progress of each task
    r = subprocess.run([sys.executable, "-m", "ketch", "run", str(src), "-p", "x=-1", "--server", shared_ketch.url], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "FAILED" in r.stdout and "negative" in r.stdout
    assert "last lines of" in r.stdout and "ValueError" in r.stdout  # the failed task's log


def test_run_survives_kill9_of_ketch(tmp_path: Path) -> None:
    k = make_ketch(tmp_path).start()
    try:
        c = client(k)
        rid = c.create_run_from_pipeline_func(sleepy, arguments={"seconds": 3.0}).run_id
        wait_for(lambda: c.get_run(rid).state == "RUNNING" and any(t.state == "RUNNING" for t in c.get_run(rid).run_details.task_details or []),
                 timeout=30, what="task running")
        k.kill9()
        k.start()
        run = wait_run(client(k), rid, timeout=60)
        assert run.state in ("SUCCEEDED", "FAILED")  # resumed or cleanly failed, never RUNNING forever
        assert run.state == "SUCCEEDED", run.error
    finally:
        k.stop()


def test_server_side_cache_between_runs(shared_ketch) -> None:
    c = client(shared_ketch)
    first = wait_run(c, c.create_run_from_pipeline_func(two_step, arguments={"n": 11}, enable_caching=True).run_id)
    second = wait_run(c, c.create_run_from_pipeline_func(two_step, arguments={"n": 11}, enable_caching=True).run_id)
    assert first.state == second.state == "SUCCEEDED"
    raw = shared_ketch.http().get(f"/apis/v2beta1/runs/{second.run_id}").json()
    details = {t["task_name"]: t for t in raw["run_details"]["task_details"]}
    assert details["make"]["cached"] and details["make"]["state"] == "SKIPPED" and "pod_name" not in details["make"]
    assert raw["pipeline_outputs"]["parameters"] == {"Output": 11}
    third = wait_run(c, c.create_run_from_pipeline_func(two_step, arguments={"n": 11}, enable_caching=False).run_id)
    raw = shared_ketch.http().get(f"/apis/v2beta1/runs/{third.run_id}").json()
    assert not any(t["cached"] for t in raw["run_details"]["task_details"])


def test_vanished_task_pod_fails_the_run_cleanly(shared_ketch) -> None:
    c = client(shared_ketch)
    rid = c.create_run_from_pipeline_func(sleepy, arguments={"seconds": 120.0}).run_id

    def pod_name():
        run = shared_ketch.http().get(f"/apis/v2beta1/runs/{rid}").json()
        return next((t["pod_name"] for t in run["run_details"]["task_details"] if t.get("pod_name") and t["state"] == "RUNNING"), None)

    pod = wait_for(pod_name, timeout=30, what="task pod")
    shared_ketch.kubectl("delete", "pod", "-n", "kubeflow", pod, "--wait=true")
    run = wait_run(c, rid, timeout=60)
    assert run.state == "FAILED" and "disappeared" in run.error.message


@dsl.component
def nap_then(i: int) -> int:
    import time

    time.sleep(1.0)
    return i


@dsl.pipeline
def parallel_naps() -> list:
    with dsl.ParallelFor([1, 2, 3]) as i:
        n = nap_then(i=i).set_caching_options(False)
    return dsl.Collected(n.output)


def test_independent_task_pods_overlap(shared_ketch) -> None:
    c = client(shared_ketch)
    rid = c.create_run_from_pipeline_func(parallel_naps).run_id
    assert wait_run(c, rid).state == "SUCCEEDED"
    raw = shared_ketch.http().get(f"/apis/v2beta1/runs/{rid}").json()
    assert raw["pipeline_outputs"]["parameters"]["Output"] == [1, 2, 3]
    spans = sorted((t["start_time"], t["end_time"]) for t in raw["run_details"]["task_details"] if t["task_name"] == "nap-then")
    assert len(spans) == 3
    assert spans[1][0] < spans[0][1] and spans[2][0] < spans[0][1]  # all started before the first ended


@dsl.component
def gated(seconds: float, flag: str) -> str:
    import pathlib
    import time

    pathlib.Path(flag).touch()
    time.sleep(seconds)
    return "first done"


@dsl.component
def after_gate(msg: str) -> str:
    return msg + ", then second"


@dsl.pipeline
def two_phases(flag: str, seconds: float = 1.5) -> str:
    a = gated(seconds=seconds, flag=flag).set_caching_options(False)
    return after_gate(msg=a.output).set_caching_options(False).output


def test_pause_lets_running_tasks_finish_and_starts_nothing_until_resumed(shared_ketch, tmp_path: Path) -> None:
    c = client(shared_ketch)
    flag = tmp_path / "started"
    rid = c.create_run_from_pipeline_func(two_phases, arguments={"flag": str(flag), "seconds": 4.0}).run_id
    wait_for(flag.exists, what="first task running")
    env = {**os.environ, "PYTHONPATH": str(SRC), "KETCH_TOKEN": shared_ketch.token}
    cli = subprocess.run([sys.executable, "-m", "ketch", "pause", rid, "--server", shared_ketch.url], capture_output=True, text=True, env=env, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert wait_run(c, rid, states={"PAUSED"}).state == "PAUSED"

    def first_done() -> bool:
        tasks = {t.display_name: t.state for t in c.get_run(rid).run_details.task_details}
        return tasks.get("gated") == "SUCCEEDED" and tasks

    tasks = wait_for(first_done, what="the running task finished while paused")
    time.sleep(1.0)  # room for a wrongly started second task to show up
    run = c.get_run(rid)
    assert run.state == "PAUSED" and "after-gate" not in {t.display_name for t in run.run_details.task_details}, tasks
    history = [s.state for s in run.state_history]
    assert "PAUSED" in history
    cli = subprocess.run([sys.executable, "-m", "ketch", "resume", rid, "--server", shared_ketch.url], capture_output=True, text=True, env=env, timeout=60)
    assert cli.returncode == 0, cli.stderr
    run = wait_run(c, rid)
    assert run.state == "SUCCEEDED"
    assert shared_ketch.http().get(f"/apis/v2beta1/runs/{rid}").json()["pipeline_outputs"]["parameters"] == {"Output": "first done, then second"}
    bad = subprocess.run([sys.executable, "-m", "ketch", "pause", "no-such-run", "--server", shared_ketch.url], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1 and "no run no-such-run" in bad.stderr
