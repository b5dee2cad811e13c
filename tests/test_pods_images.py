"""Images honoured without containers: ``python:3.X`` picks an installed Python 3.X (else ketch's, with a
Warning event), images.yaml's ``workingDir`` and ``requirements``, and a program that cannot be found fails
with where ketch looked and how to map the image."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_for

OURS = f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.fixture(scope="module")
def k(shared_ketch, tmp_path_factory):
    code = tmp_path_factory.mktemp("code")
    (code / "train.py").write_text("import os; print('trained in', os.getcwd())\n")
    (shared_ketch.home / "images.yaml").write_text(json.dumps({"images": [
        {"match": "example.com/code:*", "workingDir": str(code)},
        {"match": "example.com/reqs:*", "requirements": ["inflection==0.5.1"]},
    ]}))
    shared_ketch.code = code
    return shared_ketch


def run(k, name: str, image: str, command: list[str], wd: str | None = None) -> dict:
    c = {"name": "main", "image": image, "command": command}
    if wd:
        c["workingDir"] = wd
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"restartPolicy": "Never", "containers": [c]}}
    k.kubectl("apply", "-f", "-", input=json.dumps(pod))
    return wait_for(lambda: (p := k.kjson("get", "pod", name))["status"].get("phase") in ("Succeeded", "Failed") and p,
                    timeout=90, what=f"{name} done")


def other_python() -> tuple[str, str] | None:
    """A Python 3.X other than ours that runs, found by the test itself (pyenv's, or on PATH)."""
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for minor in range(9, 15):
        v = f"3.{minor}"
        if v == OURS:
            continue
        for c in [shutil.which(f"python{v}"), *glob.glob(f"{pyenv}/versions/{v}.*/bin/python{v}")]:
            if c and subprocess.run([c, "-c", "pass"], capture_output=True).returncode == 0:
                return v, c
    return None


def test_python_image_of_an_installed_version_runs_that_interpreter(k):
    found = other_python()
    if found is None:
        pytest.skip(f"no Python 3.X other than {OURS} is installed here")
    v, _ = found
    p = run(k, "py-other", f"python:{v}-slim", ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    assert p["status"]["phase"] == "Succeeded"
    assert k.kubectl("logs", "py-other").stdout.strip() == v


def test_python_image_of_a_missing_version_runs_ketchs_with_a_warning(k):
    p = run(k, "py-missing", "python:3.99", ["python", "-c", "import sys; print(sys.executable)"])
    assert p["status"]["phase"] == "Succeeded"
    assert os.path.realpath(k.kubectl("logs", "py-missing").stdout.strip()) == os.path.realpath(sys.executable)
    events = k.kjson("get", "events", "--field-selector", "involvedObject.name=py-missing")["items"]
    warn = [e for e in events if e["reason"] == "InterpreterNotFound"]
    assert warn and warn[0]["type"] == "Warning" and "Python 3.99" in warn[0]["message"] and "images.yaml" in warn[0]["message"]


def test_images_yaml_working_dir_is_the_images_workdir(k):
    p = run(k, "code", "example.com/code:1", ["python", "train.py"])
    assert p["status"]["phase"] == "Succeeded", p["status"]
    assert k.kubectl("logs", "code").stdout.strip() == f"trained in {k.code}"


def test_a_script_that_is_not_in_the_working_directory_says_where_it_looked(k):
    p = run(k, "lost-script", "pytorch/pytorch", ["python", "train.py"])
    t = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["reason"] == "ContainerCannotRun" and p["status"]["phase"] == "Failed"
    assert '"train.py"' in t["message"] and "working directory is" in t["message"] and p["metadata"]["uid"] in t["message"]
    assert 'map image "pytorch/pytorch" in KETCH_HOME/images.yaml with workingDir' in t["message"]


def test_a_relative_program_that_does_not_exist(k, tmp_path: Path):
    p = run(k, "lost-program", "busybox", ["./run.sh"], wd=str(tmp_path))
    t = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["reason"] == "ContainerCannotRun"
    assert t["message"] == f'exec: "./run.sh": no such file in the working directory; the working directory is {tmp_path}'


def test_a_missing_program_names_the_path_it_searched(k):
    p = run(k, "lost-exe", "busybox", ["no-such-tool-xyz"])
    msg = p["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert msg.startswith('exec: "no-such-tool-xyz": executable file not found in $PATH (looked in ')
    assert 'map image "busybox" in KETCH_HOME/images.yaml' in msg


def test_images_yaml_requirements_build_an_environment_once(k):
    code = "import inflection, sys; print(inflection.camelize('a_b'), sys.prefix)"
    p = run(k, "reqs", "example.com/reqs:1", ["python", "-c", code])
    assert p["status"]["phase"] == "Succeeded", p["status"]
    word, prefix = k.kubectl("logs", "reqs").stdout.split()
    assert word == "AB" and prefix.startswith(str(k.home / "envs" / "images"))
    p = run(k, "reqs-again", "example.com/reqs:2", ["python", "-c", code])
    assert k.kubectl("logs", "reqs-again").stdout.split() == [word, prefix]  # the same environment, not rebuilt
    r = subprocess.run([sys.executable, "-c", "import inflection"], capture_output=True)
    assert r.returncode != 0  # ketch's own environment did not get it
