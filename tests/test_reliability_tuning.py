"""Katib Experiments cannot make the server do unbounded work: grids are counted (and capped) before they are
enumerated, non-finite bounds are refused with the field named, an Experiment an older ketch stored with a
huge grid fails with a condition instead of keeping the server from starting, and a missing optional extra
(optuna) is a condition on the object, not a traceback loop in the log."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import make_ketch, wait_for

NS = "default"
EXPS = f"/apis/kubeflow.org/v1beta1/namespaces/{NS}/experiments"


def experiment(name: str, algorithm: str = "grid", params: list | None = None) -> dict:
    return {
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name, "namespace": NS},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": algorithm},
            "parallelTrialCount": 1, "maxTrialCount": 2,
            "metricsCollectorSpec": {"collector": {"kind": "Push"}},
            "parameters": params or [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1", "step": "0.5"}}],
            "trialTemplate": {
                "primaryContainerName": "training",
                "trialParameters": [{"name": "lr", "reference": "lr"}],
                "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "training", "image": "python", "command": ["python", "-c", "pass", "${trialParameters.lr}"]}]}}}},
            },
        },
    }


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory):
    kk = make_ketch(tmp_path_factory.mktemp("tuning-bounds"), env={"KETCH_DISABLE": "kubelet"}).start()
    try:
        yield kk
    finally:
        kk.stop()


def healthz_ms(k) -> float:
    with k.http(timeout=5) as h:
        t0 = time.perf_counter()
        assert h.get("/healthz").status_code == 200
        return (time.perf_counter() - t0) * 1000


def test_huge_grid_is_refused_before_it_is_expanded(k):
    exp = experiment("grid-bomb", params=[{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1", "step": "1e-9"}}])
    with k.http(timeout=10) as h:
        r = h.post(EXPS, json=exp)
        assert r.status_code == 422, r.text
        assert "more than the 100000 allowed" in r.json()["message"]
        assert r.json()["details"]["causes"][0]["field"].startswith("spec.algorithm")
        # ints count too: 0..10^12 with the default step 1
        exp["spec"]["parameters"] = [{"name": "lr", "parameterType": "int", "feasibleSpace": {"min": "0", "max": "1000000000000"}}]
        assert h.post(EXPS, json=exp).status_code == 422
    assert healthz_ms(k) < 1000


@pytest.mark.parametrize("where, value", [("min", "-inf"), ("max", "inf"), ("step", "nan"), ("max", "Infinity")])
def test_non_finite_bounds_as_strings_are_refused(k, where, value):
    fs = {"min": "0", "max": "1", "step": "0.5", where: value}
    exp = experiment(f"nf-{where}", params=[{"name": "lr", "parameterType": "double", "feasibleSpace": fs}])
    with k.http() as h:
        r = h.post(EXPS, json=exp)
    assert r.status_code == 422, r.text
    fields = [c["field"] for c in r.json()["details"]["causes"]]
    assert f"spec.parameters[0].feasibleSpace.{where}" in fields
    assert "finite" in r.json()["message"]


def test_non_finite_yaml_numbers_are_refused_with_the_field_named(k):
    # YAML's .inf / .nan have no JSON form: refused before a copy could turn them into null.
    body = (
        "apiVersion: kubeflow.org/v1beta1\nkind: Experiment\nmetadata: {name: nf-yaml}\n"
        "spec:\n  objective: {type: minimize, objectiveMetricName: loss, goal: .nan}\n"
        "  algorithm: {algorithmName: random}\n  trialTemplate: {}\n"
        "  parameters: [{name: lr, parameterType: double, feasibleSpace: {min: 0, max: .inf}}]\n"
    )
    with k.http() as h:
        r = h.post(EXPS, content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422, r.text
    fields = {c["field"] for c in r.json()["details"]["causes"]}
    assert {"spec.objective.goal", "spec.parameters[0].feasibleSpace.max"} <= fields


def test_an_old_stored_huge_grid_neither_blocks_start_up_nor_the_loop(tmp_path: Path):
    """An Experiment written before the grid cap existed (put straight into the store, as an older ketch
    would have left it): ketch still starts, answers promptly, and the Experiment fails with the reason."""
    from ketch.store import open_store

    kk = make_ketch(tmp_path, env={"KETCH_DISABLE": "kubelet"}).start()
    kk.stop()
    bomb = experiment("old-bomb", params=[{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1", "step": "1e-9"}}])
    bomb["spec"]["resumePolicy"] = "Never"
    bomb["metadata"].update({"uid": "0b0b0b0b-0000-4000-8000-000000000001", "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1})
    store = open_store(str(kk.home / "ketch.db"))
    store.create("kubeflow.org/experiments", bomb)
    store.close()
    kk.start(timeout=30)
    try:
        def failed():
            with kk.http() as h:
                e = h.get(f"{EXPS}/old-bomb").json()
            return next((c for c in (e.get("status") or {}).get("conditions") or [] if c["type"] == "Failed" and c["status"] == "True"), None)

        c = wait_for(failed, 30, what="the stored grid experiment to fail")
        assert "more than the 100000 allowed" in c["message"]
        assert healthz_ms(kk) < 1000
    finally:
        kk.stop()


def test_missing_optuna_is_a_condition_not_a_log_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """With only the core package (here: optuna made unimportable), a random-search Experiment is told, on
    the object, what to install; the log holds the cause at most once, not a traceback per retry."""
    blocker = tmp_path / "no-optuna"
    (blocker / "optuna").mkdir(parents=True)
    (blocker / "optuna" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'optuna'\", name='optuna')\n")
    monkeypatch.setenv("PYTHONPATH", str(blocker))
    kk = make_ketch(tmp_path, env={"KETCH_DISABLE": "kubelet"}).start()
    try:
        exp = experiment("needs-optuna", algorithm="random")
        with kk.http() as h:
            assert h.post(EXPS, json=exp).status_code == 201

        def condition():
            with kk.http() as h:
                e = h.get(f"{EXPS}/needs-optuna").json()
            return next((c for c in (e.get("status") or {}).get("conditions") or [] if c["type"] == "Failed" and c["status"] == "True"), None)

        c = wait_for(condition, 30, what="a Failed condition naming the extra")
        assert "pip install 'ketch[tuning]'" in c["message"] and "optuna" in c["message"]
        time.sleep(2)
        assert kk.log().count("No module named 'optuna'") <= 1, kk.log()[-3000:]
    finally:
        kk.stop()


def test_grid_within_the_cap_still_runs(k):
    with k.http() as h:
        assert h.post(EXPS, json=experiment("small-grid")).status_code == 201

        def suggested():
            s = h.get(f"/apis/kubeflow.org/v1beta1/namespaces/{NS}/suggestions/small-grid").json()
            return (s.get("status") or {}).get("suggestions")

        got = wait_for(suggested, 30, what="grid suggestions")
    assert {float(x["parameterAssignments"][0]["value"]) for x in got} <= {0.0, 0.5, 1.0}
