"""Pipeline inputs beyond parameters, on a real ketch server: artifacts given to the pipeline itself at run
creation (kfp.Client, `ketch run -p`), next to dsl.importer; and pipelines uploaded as .py source."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import kfp
import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input
from kfp_server_api.exceptions import ApiException

from conftest import SRC, wait_for

warnings.filterwarnings("ignore", category=FutureWarning)
FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


@dsl.component
def count_chars(data: Input[Dataset]) -> int:
    return len(open(data.path).read())


@dsl.component
def join_texts(a: Input[Dataset], b: Input[Dataset]) -> str:
    return open(a.path).read() + "+" + open(b.path).read() + "|" + str(a.metadata.get("tag"))


@dsl.pipeline
def takes_data(data: Input[Dataset]) -> int:
    return count_chars(data=data).set_caching_options(False).output


@dsl.pipeline
def data_and_importer(data: Input[Dataset], other_uri: str) -> str:
    imp = dsl.importer(artifact_uri=other_uri, artifact_class=Dataset, reimport=False)
    return join_texts(a=data, b=imp.output).set_caching_options(False).output


def wait_run(c: kfp.Client, run_id: str, timeout: float = 90):
    return wait_for(lambda: (r := c.get_run(run_id)).state in FINAL and r, timeout=timeout, interval=0.2, what=f"run {run_id} ends")


def test_artifact_input_through_kfp_client(shared_ketch, tmp_path: Path) -> None:
    f = tmp_path / "data.txt"
    f.write_text("hello world")
    c = shared_ketch.kfp_client()
    res = c.create_run_from_pipeline_func(takes_data, arguments={"data": str(f)})
    run = wait_run(c, res.run_id)
    assert run.state == "SUCCEEDED", run
    raw = shared_ketch.http().get(f"/apis/v2beta1/runs/{res.run_id}").json()
    assert raw["pipeline_outputs"]["parameters"] == {"Output": 11}
    task = next(t for t in raw["run_details"]["task_details"] if t["task_name"] == "count-chars")
    assert task["artifacts"]["inputs"]["data"][0]["uri"] == str(f)
    # an fsspec URL with metadata, as an object; and an importer next to it
    other = tmp_path / "other.txt"
    other.write_text("b")
    res = c.create_run_from_pipeline_func(data_and_importer, arguments={"data": {"uri": f"file://{f}", "metadata": {"tag": "t1"}}, "other_uri": str(other)})
    run = wait_run(c, res.run_id)
    assert run.state == "SUCCEEDED", run
    raw = shared_ketch.http().get(f"/apis/v2beta1/runs/{res.run_id}").json()
    assert raw["pipeline_outputs"]["parameters"] == {"Output": "hello world+b|t1"}


@dsl.component
def total_chars(parts: Input[list[Dataset]]) -> int:
    return sum(len(open(p.path).read()) for p in parts)


@dsl.pipeline
def takes_list(parts: Input[list[Dataset]]) -> int:
    return total_chars(parts=parts).set_caching_options(False).output


def test_artifact_list_input(shared_ketch, tmp_path: Path) -> None:
    files = []
    for i, text in enumerate(["ab", "cde", "f"]):
        f = tmp_path / f"part{i}.txt"
        f.write_text(text)
        files.append(str(f))
    c = shared_ketch.kfp_client()
    res = c.create_run_from_pipeline_func(takes_list, arguments={"parts": files})
    run = wait_run(c, res.run_id)
    assert run.state == "SUCCEEDED", run
    raw = shared_ketch.http().get(f"/apis/v2beta1/runs/{res.run_id}").json()
    assert raw["pipeline_outputs"]["parameters"] == {"Output": 6}


def test_missing_or_malformed_artifact_input_is_refused(shared_ketch) -> None:
    c = shared_ketch.kfp_client()
    with pytest.raises(ApiException) as e:
        c.create_run_from_pipeline_func(takes_data, arguments={})
    assert "runtime_config.parameters.data: required" in e.value.body
    with pytest.raises(ApiException) as e:
        c.create_run_from_pipeline_func(takes_data, arguments={"data": 5})
    assert "runtime_config.parameters.data: expected an artifact URI" in e.value.body
    with pytest.raises(ApiException) as e:
        c.create_run_from_pipeline_func(takes_data, arguments={"data": ["/a", "/b"]})
    assert "one artifact expected" in e.value.body


PIPELINE_PY = '''
from kfp import dsl
from kfp.dsl import Dataset, Input


@dsl.component
def count_chars(data: Input[Dataset]) -> int:
    return len(open(data.path).read())


@dsl.pipeline
def takes_data(data: Input[Dataset]) -> int:
    return count_chars(data=data).set_caching_options(False).output
'''


def test_ketch_run_cli_with_artifact_input(shared_ketch, tmp_path: Path) -> None:
    src = tmp_path / "takes_data.py"
    src.write_text(PIPELINE_PY)
    f = tmp_path / "in.txt"
    f.write_text("abcd")
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONWARNINGS": "ignore", "KETCH_TOKEN": shared_ketch.token}
    r = subprocess.run([sys.executable, "-m", "ketch", "run", str(src), "-p", f"data={f}", "--server", shared_ketch.url], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCEEDED" in r.stdout and '"Output": 4' in r.stdout
    r = subprocess.run([sys.executable, "-m", "ketch", "run", str(src), "--server", shared_ketch.url], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "runtime_config.parameters.data: required" in r.stderr


UPLOAD_PY = '''
from kfp import dsl


@dsl.component
def shout(word: str) -> str:
    return word.upper() + "!"


@dsl.pipeline(name="shouter")
def shouter(word: str = "hey") -> str:
    return shout(word=word).set_caching_options(False).output
'''

TWO_PIPELINES_PY = UPLOAD_PY + '''

@dsl.pipeline
def second():
    shout(word="x")
'''


def test_upload_python_source_compiles_server_side(shared_ketch, tmp_path: Path) -> None:
    marker = tmp_path / "imported-in"
    src = tmp_path / "shouter.py"
    # the module records which process imported it: the server must not be that process
    src.write_text(f"import os\nopen({str(marker)!r}, 'a').write(str(os.getpid()) + '\\n')\n" + UPLOAD_PY)
    http = shared_ketch.http()
    r = http.post("/apis/v2beta1/pipelines/upload", params={"name": "shouter-py"}, files={"uploadfile": ("shouter.py", src.read_bytes(), "text/x-python")})
    assert r.status_code == 200, r.text
    pid = r.json()["pipeline_id"]
    pids = {int(x) for x in marker.read_text().split()}
    assert len(pids) == 1 and shared_ketch.proc.pid not in pids and os.getpid() not in pids
    vs = http.get(f"/apis/v2beta1/pipelines/{pid}/versions").json()["pipeline_versions"]
    assert len(vs) == 1
    spec = vs[0]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "shouter" and "comp-shout" in spec["components"]
    c = shared_ketch.kfp_client()
    run = c.run_pipeline(experiment_id=c.create_experiment("py-upload").experiment_id, job_name="from-py", pipeline_id=pid, version_id=vs[0]["pipeline_version_id"], params={"word": "ok"})
    done = wait_run(c, run.run_id)
    assert done.state == "SUCCEEDED", done
    raw = http.get(f"/apis/v2beta1/runs/{run.run_id}").json()
    assert raw["pipeline_outputs"]["parameters"] == {"Output": "OK!"}
    # a new version from .py through upload_version
    r = http.post("/apis/v2beta1/pipelines/upload_version", params={"pipelineid": pid, "name": "v2"}, files={"uploadfile": ("shouter.py", UPLOAD_PY.encode(), "text/x-python")})
    assert r.status_code == 200, r.text


def test_upload_python_source_errors_name_the_problem(shared_ketch) -> None:
    http = shared_ketch.http()

    def up(name: str, text: str):
        return http.post("/apis/v2beta1/pipelines/upload", params={"name": name}, files={"uploadfile": (f"{name}.py", text.encode(), "text/x-python")})

    r = up("two", TWO_PIPELINES_PY)
    assert r.status_code == 400 and "expected exactly one @dsl.pipeline" in r.json()["message"] and "second, shouter" in r.json()["message"]
    r = up("none", "x = 1\n")
    assert r.status_code == 400 and "found 0 (none)" in r.json()["message"]
    r = up("broken", "import no_such_module_here\n")
    assert r.status_code == 400 and "ModuleNotFoundError" in r.json()["message"] and "no_such_module_here" in r.json()["message"]
    # a pipeline used as a sub-pipeline by another is not a candidate: the outer one is taken
    r = up("nested", UPLOAD_PY + "\n\n@dsl.pipeline\ndef outer():\n    shouter(word='in')\n")
    assert r.status_code == 200, r.text
    v = http.get(f"/apis/v2beta1/pipelines/{r.json()['pipeline_id']}/versions").json()["pipeline_versions"][0]
    assert v["pipeline_spec"]["pipelineInfo"]["name"] == "outer"
    # nothing half-written: no pipeline was created for any of the failed ones
    names = {p["display_name"] for p in http.get("/apis/v2beta1/pipelines").json().get("pipelines") or []}
    assert not names & {"two", "none", "broken"}


@dsl.component
def chatty(seconds: float) -> str:
    import time

    print("starting the slow part")  # no flush: the launcher must not hold it back until the end
    time.sleep(seconds)
    return "done"


@dsl.pipeline
def slow_chatty(seconds: float = 60.0):
    # the kubelet defaults PYTHONUNBUFFERED=1; turn it off so the launcher's own line buffering is what is tested
    chatty(seconds=seconds).set_caching_options(False).set_env_variable("PYTHONUNBUFFERED", "")


def test_task_log_visible_while_task_runs(shared_ketch) -> None:
    c = shared_ketch.kfp_client()
    res = c.create_run_from_pipeline_func(slow_chatty, arguments={"seconds": 60.0})
    http = shared_ketch.http()

    def pod_name():
        raw = http.get(f"/apis/v2beta1/runs/{res.run_id}").json()
        t = next((t for t in (raw.get("run_details") or {}).get("task_details") or [] if t.get("task_name") == "chatty"), None)
        return t and t.get("state") == "RUNNING" and t.get("pod_name")

    pod = wait_for(pod_name, timeout=60, interval=0.2, what="chatty task running")

    def logged():
        r = http.get(f"/api/v1/namespaces/kubeflow/pods/{pod}/log")
        return r.status_code == 200 and "starting the slow part" in r.text

    wait_for(logged, timeout=30, interval=0.3, what="the task's print in its Pod log while it runs")
    assert c.get_run(res.run_id).state == "RUNNING"  # seen before the end, not after
    c.terminate_run(res.run_id)
    wait_run(c, res.run_id)
