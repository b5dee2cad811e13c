"""ketch installed in a virtualenv, as users install it: bare ``python``/``python3`` in a Pod is ketch's
interpreter *with its environment*, so a package only the venv has imports, and ``sys.prefix`` is the venv.

The venv is made cheaply: ``python -m venv --without-pip`` plus a ``.pth`` file that layers this test
interpreter's site directories under it (so ketch's dependencies import), and one module written only into
the venv's own site-packages, which the base interpreter cannot import.
"""

from __future__ import annotations

import json
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import make_ketch, wait_for


def make_venv(root: Path, marker: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, capture_output=True)
    py = root / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    if site.ENABLE_USER_SITE:
        ours.append(site.getusersitepackages())
    Path(purelib, "_layered_over_tests.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    Path(purelib, f"{marker}.py").write_text(f"WHERE = {str(root)!r}\n")
    return root


@pytest.fixture(scope="module")
def venv_ketch(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("venv")
    venv = make_venv(tmp / "ketch-venv", "only_in_ketch_venv")
    other = make_venv(tmp / "other-venv", "only_in_other_venv")
    k = make_ketch(tmp, python=str(venv / "bin" / "python"))
    (k.home / "images.yaml").write_text(json.dumps({"images": [{"match": "example.com/other:*", "venv": str(other)}]}))
    k.start()
    try:
        yield k, venv, other
    finally:
        k.stop()


def run_pod(k, name: str, command: list[str], image: str = "python:3.11", annotations: dict | None = None) -> str:
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": image, "command": command}]},
    }
    k.kubectl("apply", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: (k.kjson("get", "pod", name).get("status") or {}).get("phase") in ("Succeeded", "Failed"), what=f"{name} done")
    out = k.kubectl("logs", name).stdout
    assert k.kjson("get", "pod", name)["status"]["phase"] == "Succeeded", out
    return out


def test_the_base_interpreter_cannot_import_the_marker(venv_ketch):
    r = subprocess.run([sys.executable, "-c", "import only_in_ketch_venv"], capture_output=True)
    assert r.returncode != 0  # otherwise the tests below would prove nothing


@pytest.mark.parametrize("exe", ["python", "python3"])
def test_bare_python_in_a_pod_is_ketchs_venv(venv_ketch, exe):
    k, venv, _ = venv_ketch
    out = run_pod(k, f"bare-{exe}", [exe, "-c", "import sys, only_in_ketch_venv as m; print(sys.prefix); print(m.WHERE)"])
    assert out.split() == [str(venv), str(venv)]


def test_a_warm_start_in_a_venv_forks_from_the_venvs_interpreter(venv_ketch, tmp_path):
    k, venv, _ = venv_ketch
    (tmp_path / "probe_mod.py").write_text("import sys, only_in_ketch_venv\nprint(sys.prefix, 'xml.dom.minidom' in sys.modules)\n")
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "warm", "namespace": "default", "annotations": {"kubelet.ketch.dev/preload": "xml.dom.minidom"}},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "python:3.11", "command": ["python3", "-m", "probe_mod"],
            "env": [{"name": "PYTHONPATH", "value": str(tmp_path)}]}]},
    }
    k.kubectl("apply", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: (k.kjson("get", "pod", "warm").get("status") or {}).get("phase") in ("Succeeded", "Failed"), what="warm done")
    out = k.kubectl("logs", "warm").stdout
    assert k.kjson("get", "pod", "warm")["status"]["phase"] == "Succeeded", out
    assert out.split() == [str(venv), "True"]  # forked from the venv's warm interpreter, not exec'd


def test_an_image_mapped_to_another_venv_gets_that_venv(venv_ketch):
    k, _, other = venv_ketch
    out = run_pod(k, "other", ["python", "-c", "import sys, only_in_other_venv; print(sys.prefix)"], image="example.com/other:1")
    assert out.split() == [str(other)]


def test_outside_a_venv_bare_python_is_the_base_interpreter(tmp_path):
    """The other way ketch is installed: into an interpreter that is not a venv (here the base interpreter,
    given this environment's site directories on PYTHONPATH). Its python/python3 shims are symlinks."""
    base = getattr(sys, "_base_executable", sys.executable)
    if sys.prefix == sys.base_prefix:
        base = sys.executable
    paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    k = make_ketch(tmp_path, python=base, env={"PYTHONPATH": ":".join(dict.fromkeys(paths))})
    k.start()
    try:
        out = run_pod(k, "base", ["python3", "-c", "import sys, yaml; print(sys.prefix)"])
        assert out.split() == [sys.base_prefix]
    finally:
        k.stop()


DDP = """
import sys, torch, torch.distributed as dist, only_in_ketch_venv
dist.init_process_group("gloo")
t = torch.ones(1) * (dist.get_rank() + 1)
dist.all_reduce(t)
print(f"rank={dist.get_rank()} world={dist.get_world_size()} sum={int(t.item())} prefix={sys.prefix}")
dist.destroy_process_group()
"""


def test_a_pytorchjob_with_bare_python3_runs_in_ketchs_venv(venv_ketch, tmp_path):
    """The issue's crash loop: ``command: [python3, ddp.py]`` must find torch (and the venv's packages)."""
    pytest.importorskip("torch", reason="needs the torch extra")
    k, venv, _ = venv_ketch
    (tmp_path / "ddp.py").write_text(DDP)
    c = {"name": "pytorch", "image": "python:3.11", "command": ["python3", "ddp.py"], "workingDir": str(tmp_path)}
    rs = {"replicas": 1, "restartPolicy": "Never", "template": {"spec": {"containers": [c]}}}
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "ddp", "namespace": "default"},
           "spec": {"pytorchReplicaSpecs": {"Master": rs, "Worker": rs}}}
    k.kubectl("apply", "-f", "-", input=json.dumps(job))
    k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/ddp", "--timeout=120s", timeout=140)
    for pod, rank in (("ddp-master-0", 0), ("ddp-worker-0", 1)):
        assert k.kubectl("logs", pod).stdout.split() == [f"rank={rank}", "world=2", "sum=3", f"prefix={venv}"]


OBJECTIVE = """
import argparse, only_in_ketch_venv  # the venv's own module: this is the venv's interpreter
from ketch.tuning import report
p = argparse.ArgumentParser(); p.add_argument("--x", type=float); a = p.parse_args()
print(f"loss={(a.x - 2) ** 2}")
report(loss=(a.x - 2) ** 2)
"""


def test_katib_trials_running_python3_objective_py_in_ketchs_venv(venv_ketch, tmp_path):
    """Every Katib trial running ``python3 obj.py`` failed from a venv install; here they run the venv's
    interpreter, import its packages and push their metric with their ServiceAccount's token."""
    pytest.importorskip("optuna", reason="needs the tuning extra")
    k, _, _ = venv_ketch
    (tmp_path / "obj.py").write_text(OBJECTIVE)
    exp = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": "venv-exp", "namespace": "default"},
           "spec": {"objective": {"type": "minimize", "objectiveMetricName": "loss"}, "algorithm": {"algorithmName": "random"},
                    "parallelTrialCount": 2, "maxTrialCount": 3, "metricsCollectorSpec": {"collector": {"kind": "Push"}},
                    "parameters": [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "4"}}],
                    "trialTemplate": {"primaryContainerName": "obj", "trialParameters": [{"name": "x", "reference": "x"}],
                                      "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {
                                          "restartPolicy": "Never", "containers": [{"name": "obj", "image": "python:3.11", "workingDir": str(tmp_path),
                                                                                    "command": ["python3", "obj.py", "--x=${trialParameters.x}"]}]}}}}}}}
    k.kubectl("apply", "-f", "-", input=json.dumps(exp))
    k.kubectl("wait", "--for=condition=Succeeded", "experiment/venv-exp", "--timeout=150s", timeout=170)
    e = k.kjson("get", "experiment", "venv-exp")
    assert e["status"]["trialsSucceeded"] == 3, e["status"]
