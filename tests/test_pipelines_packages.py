"""``packages_to_install`` never writes ketch's environment: the packages come from a layer built with uv for
that set (``ketch.pyenvs``), reused by the next task with the same set, and garbage-collected.

A container component's own ``pip install`` goes into its task's directory (``PIP_TARGET``). The packages
are small pure-Python ones from PyPI (uv's cache makes reruns offline): ``inflection``, which
ketch's environment does not have, and ``packaging==23.2``, an older version of a package ketch's
environment has and its warm interpreter has already imported (so the task must start afresh with the
layer first to see it).
"""

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from kfp import dsl

from conftest import wait_for
from ketch import pyenvs

warnings.filterwarnings("ignore", category=FutureWarning)


@dsl.component(packages_to_install=["inflection==0.5.1"])
def camel(word: str) -> str:
    import inflection

    return inflection.camelize(word) + "|" + inflection.__file__


@dsl.component(packages_to_install=["packaging==23.2"])
def old_packaging() -> str:
    import packaging

    return packaging.__version__ + "|" + packaging.__file__


@dsl.container_component
def pip_in_command():
    check = "import inflection, os; assert inflection.__file__.startswith(os.environ['PIP_TARGET']), inflection.__file__"
    return dsl.ContainerSpec(image="python:3.11", command=["sh", "-c"],
                             args=[f'python3 -m pip install -q --disable-pip-version-check inflection==0.5.1 && python3 -c "{check}"'])


@dsl.pipeline
def with_packages(word: str = "hello_world") -> str:
    camel(word=word).set_caching_options(False)
    return old_packaging().set_caching_options(False).output


@dsl.pipeline
def pip_pipeline():
    pip_in_command().set_caching_options(False)


def freeze() -> str:
    """``pip freeze`` of the environment ketch's server runs from (the fixtures start it with this one)."""
    return subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], check=True, capture_output=True, text=True).stdout


def submit(k, func, **kw) -> str:
    return k.kfp_client().create_run_from_pipeline_func(func, arguments=kw).run_id


def wait_run(k, rid: str) -> str:
    c = k.kfp_client()
    wait_for(lambda: c.get_run(rid).state in ("SUCCEEDED", "FAILED", "CANCELED"), timeout=120, interval=0.2, what="run done")
    return rid


def run_and_wait(k, func, **kw) -> str:
    return wait_run(k, submit(k, func, **kw))


def results(k) -> dict[str, str]:
    """Each task's ``Output`` parameter, read from the PipelineRun's task results on disk."""
    found = {}
    for f in (k.home / "pipelines" / "runs").rglob("result.json"):
        data = json.loads(f.read_text())
        if "Output" in (data.get("parameters") or {}):
            found[f.parent.name] = data["parameters"]["Output"]
    return found


def test_packages_come_from_a_layer_and_ketchs_environment_is_untouched(shared_ketch):
    k = shared_ketch
    before = freeze()
    pip_rid = submit(k, pip_pipeline)
    rid = run_and_wait(k, with_packages)
    assert k.kfp_client().get_run(rid).state == "SUCCEEDED", k.log()[-3000:]
    assert k.kfp_client().get_run(wait_run(k, pip_rid)).state == "SUCCEEDED"  # pip install in a command: PIP_TARGET
    outs = list(results(k).values())
    layers = k.home / "envs" / "tasks"
    camelized = next(o for o in outs if o.startswith("HelloWorld|"))
    assert camelized.split("|")[1].startswith(str(layers))
    version, where = next(o for o in outs if o.startswith("23.2|")).split("|")
    assert where.startswith(str(layers)) and version == "23.2"
    assert freeze() == before
    built = sorted(p for p in layers.iterdir() if not p.name.startswith("."))
    assert len(built) == 2
    stamps = {p: (p / ".ready").stat().st_mtime for p in built}

    # the same sets again: the layers are reused, not rebuilt
    assert k.kfp_client().get_run(run_and_wait(k, with_packages)).state == "SUCCEEDED"
    assert sorted(p for p in layers.iterdir() if not p.name.startswith(".")) == built
    assert {p: (p / ".ready").stat().st_mtime for p in built} == stamps
    assert freeze() == before


def test_a_layer_holds_only_what_the_base_lacks(tmp_path: Path):
    """ecdsa depends on six, which ketch's environment has: six shows through instead of being copied."""
    pytest.importorskip("six")
    layer = pyenvs.ensure(tmp_path, ["ecdsa"], [])
    ready = json.loads((layer.root / ".ready").read_text())
    assert [p.split("==")[0] for p in ready["layer"]] == ["ecdsa"]
    assert "six" in ready["fromBase"]
    assert layer.top_level() == {"ecdsa"}
    code = f"import sys; sys.path.insert(0, {str(layer.site)!r}); import ecdsa, six; print(ecdsa.__file__); print(six.__file__)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert out[0].startswith(str(layer.site)) and not out[1].startswith(str(layer.site))


def test_garbage_collection_by_age_then_size(tmp_path: Path):
    now = time.time()

    def fake(name: str, age: float, size: int) -> Path:
        d = tmp_path / name
        (d / "site").mkdir(parents=True)
        (d / ".ready").write_text(json.dumps({"bytes": size}))
        (d / ".used").touch()
        os.utime(d / ".used", (now - age, now - age))
        return d

    fake("old", age=30 * 86400, size=10)
    fake("lru", age=3 * 3600, size=600)
    fake("mid", age=2 * 3600, size=600)
    fake("recent", age=60, size=600)  # in use by a running task, maybe: never removed
    removed = pyenvs.collect_garbage(tmp_path, max_age=7 * 86400, max_bytes=1300)
    assert removed == ["old", "lru"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mid", "recent"]
