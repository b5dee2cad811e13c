"""Training and tuning pages in headless Chromium against a real ``ketch up``. The objects are written
through the API in the shapes the training and Katib operators write (their status via the status
subresource), and the pages must follow them live."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from dashboard_kinds import (
    TRAINING_CRDS,
    install,
    pytorchjob,
)
from tuning_helpers import NAS


def put_status(ketch, path: str, status: dict) -> None:
    with ketch.http() as c:
        obj = c.get(path).json()
        obj["status"] = status
        r = c.put(path + "/status", json=obj)
        assert r.status_code == 200, r.text


def test_training_job_runs_and_the_pages_follow_it(ketch, dashboard):
    """A real PyTorchJob run by the training operator and the local kubelet: the list and the job's page
    follow it to Succeeded, with replicas, pods, conditions, events and each pod's log."""
    install(ketch, TRAINING_CRDS)  # no-op where the training component serves its own CRDs
    script = ("import os, time; time.sleep(1.5); "
              "print('hello from', os.environ.get('RANK'), 'of', os.environ.get('WORLD_SIZE'), flush=True)")
    job = pytorchjob("mnist", workers=1)
    for spec in job["spec"]["pytorchReplicaSpecs"].values():
        spec["restartPolicy"] = "Never"
        spec["template"]["spec"]["containers"][0].update(image="python:3.11", command=["python", "-c", script])
    page = dashboard.open("/training")
    with ketch.http() as c:
        r = c.post("/apis/kubeflow.org/v1/namespaces/default/pytorchjobs", json=job)
        assert r.status_code == 201, r.text
    row = page.locator("#training-jobs tbody tr", has_text="mnist")
    expect(row).to_contain_text("PyTorchJob")
    row.get_by_role("link", name="mnist").click()
    expect(page.locator("h1")).to_contain_text("PyTorchJob mnist")
    reps = page.locator("#replica-table")
    expect(reps.locator("tbody tr", has_text="Worker").locator("td").nth(1)).to_have_text("1")
    pods = page.locator("#job-pods tbody tr")
    expect(pods).to_have_count(2, timeout=30000)
    expect(page.locator("#conditions tbody tr", has_text="Succeeded")).to_contain_text("True", timeout=60000)
    expect(reps.locator("tbody tr", has_text="Master").locator("td").nth(3)).to_have_text("1")
    # (A PyTorchJob succeeds with its Master; the operator may stop the workers then.)
    expect(page.locator("#job-pods tbody tr", has_text="master").locator(".badge")).to_have_text("Succeeded")
    expect(page.locator("#object-events tbody tr").first).to_be_visible()
    page.locator("#job-pods tbody tr", has_text="worker").get_by_role("button", name="Logs").click()
    expect(page.locator("#pod-log")).to_contain_text("hello from 1 of 2", timeout=20000)
    page.locator("#job-pods tbody tr", has_text="master").get_by_role("button", name="Logs").click()
    expect(page.locator("#pod-log")).to_contain_text("hello from 0 of 2", timeout=20000)
    dashboard.shot("training-detail")
    page = dashboard.open("/training")
    expect(page.locator("#training-jobs tbody tr", has_text="mnist").locator(".badge")).to_have_text("Succeeded")
    dashboard.shot("training-list")


def real_experiment(name: str, trials: int = 6) -> dict:
    script = ("import sys; lr, layers, opt = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]; "
              "acc = min(0.99, 0.5 + lr * 4 + layers * 0.02 + (0.05 if opt == 'adam' else 0)); "
              "print('accuracy=%.4f' % acc, flush=True)")
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
                     "algorithm": {"algorithmName": "random"}, "maxTrialCount": trials, "parallelTrialCount": 3,
                     "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
                     "parameters": [{"name": "lr", "parameterType": "double", "feasibleSpace": {"min": "0.001", "max": "0.1"}},
                                    {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "5"}},
                                    {"name": "optimizer", "parameterType": "categorical", "feasibleSpace": {"list": ["sgd", "adam"]}}],
                     "trialTemplate": {"primaryContainerName": "training",
                                       "trialParameters": [{"name": "lr", "reference": "lr"}, {"name": "layers", "reference": "layers"},
                                                           {"name": "optimizer", "reference": "optimizer"}],
                                       "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {
                                           "restartPolicy": "Never", "containers": [{"name": "training", "image": "python:3.11",
                                           "command": ["python", "-c", script, "${trialParameters.lr}", "${trialParameters.layers}", "${trialParameters.optimizer}"]}]}}}}}}}


def test_tuning_experiment_runs_and_the_pages_follow_it(ketch, dashboard):
    """A real Katib experiment (random search, trials as Jobs run by the kubelet, StdOut metrics): the list
    shows its progress, its page the best trial, the sortable trials table and both plots, all live."""
    page = dashboard.open("/tuning")
    with ketch.http() as c:
        exp = real_experiment("hpo")
        exp["spec"]["trialTemplate"]["retain"] = True  # finished trials keep their Pods, so their logs stay readable
        r = c.post("/apis/kubeflow.org/v1beta1/namespaces/default/experiments", json=exp)
        assert r.status_code == 201, r.text
    row = page.locator("#tuning-experiments tbody tr", has_text="hpo")
    expect(row).to_be_visible()
    row.get_by_role("link", name="hpo").click()
    trials = page.locator("#trials-table")
    expect(trials.locator("th")).to_have_text(["Trial", "State", "lr", "layers", "optimizer", "accuracy", ""])
    # The page fills in as trials finish, without a reload.
    expect(trials.locator("tbody tr .badge", has_text="Succeeded")).to_have_count(6, timeout=120000)
    expect(page.locator("#tuning-summary .badge").first).to_have_text("Succeeded", timeout=30000)
    expect(page.locator("#tuning-summary .progress")).to_have_attribute("title", re.compile(r"^6/6"))
    exp = ketch.kjson("get", "experiment", "hpo")
    best = exp["status"]["currentOptimalTrial"]["bestTrialName"]
    expect(page.locator("#best-trial")).to_contain_text(best)
    # Sorting by the objective, descending, puts the best trial first; each value is what the trial printed.
    trials.locator("th", has_text="accuracy").click()
    trials.locator("th", has_text="accuracy").click()
    expect(trials.locator("tbody tr").first).to_contain_text(best)
    best_acc = next(m for m in exp["status"]["currentOptimalTrial"]["observation"]["metrics"] if m["name"] == "accuracy")
    assert float(trials.locator("tbody tr").first.locator("td").nth(5).inner_text()) == float(best_acc["latest"])
    # The trial's own log, from its Pod's primary container: what it printed
    trials.locator("tbody tr").first.locator("button.trial-logs").click()
    expect(page.locator("#trial-log-title")).to_contain_text(best)
    expect(page.locator("#trial-log")).to_contain_text(f"accuracy={float(best_acc['latest']):.4f}")
    expect(page.locator("#objective-chart polyline")).to_have_count(2)
    expect(page.locator("#parallel-coordinates polyline.pc-line")).to_have_count(6)
    dashboard.shot("tuning-experiment")
    page = dashboard.open("/tuning")
    expect(page.locator("#tuning-experiments tbody tr", has_text="hpo").locator(".progress")).to_contain_text("6/6")
    dashboard.shot("tuning-list")


# A trial that scores the architecture it is handed (no training: the page is under test, not ENAS)
ENAS_TRIAL = ("import sys, json; a = dict(x.split('=', 1) for x in sys.argv[1:]); "
              "arch = json.loads(a['--architecture'].replace(\"'\", '\"')); cfg = json.loads(a['--nn_config'].replace(\"'\", '\"')); "
              "conv = sum(cfg['embedding'][str(r[0])]['opt_type'] == 'convolution' for r in arch); "
              "print('Validation-Accuracy=%.4f' % (0.5 + 0.1 * conv + 0.01 * sum(sum(r[1:]) for r in arch)), flush=True)")
KATIB_GENOTYPE = ("Genotype(normal=[[('separable_convolution_3x3', 0), ('max_pooling_3x3', 1)], [('skip_connection', 0), "
                  "('separable_convolution_5x5', 2)]], normal_concat=range(2, 4), reduce=[[('max_pooling_3x3', 0), ('max_pooling_3x3', 1)], "
                  "[('skip_connection', 2), ('separable_convolution_3x3', 1)]], reduce_concat=range(2, 4))")


def nas_experiment(name: str, algorithm: str, command: list[str], trials: int, nas: dict, **spec) -> dict:
    params = ([{"name": "neuralNetworkArchitecture", "reference": "architecture"}, {"name": "neuralNetworkConfig", "reference": "nn_config"}]
              if algorithm == "enas" else [{"name": "searchSpace", "reference": "search-space"}])
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"objective": {"type": "maximize", "objectiveMetricName": "Validation-Accuracy"}, "algorithm": {"algorithmName": algorithm},
                     "maxTrialCount": trials, "parallelTrialCount": min(2, trials), "nasConfig": nas,
                     "metricsCollectorSpec": {"collector": {"kind": "StdOut"}},
                     "trialTemplate": {"primaryContainerName": "training", "trialParameters": params,
                                       "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"backoffLimit": 0, "template": {"spec": {
                                           "restartPolicy": "Never", "containers": [{"name": "training", "image": "python:3.11", "command": command}]}}}}},
                     **spec}}


def test_nas_experiments_show_the_best_architecture(ketch, dashboard):
    """Real ENAS and DARTS experiments (ketch's suggestions, trials run by the kubelet): the experiment's page
    shows the best trial's architecture layer by layer (operation, its parameters from nn_config, skip
    connections) and DARTS' genotype, from Katib's Best-Genotype metric or, not collected, the trial's log."""
    pytest.importorskip("torch", reason="ENAS' controller is torch (the torch extra)")
    from ketch.tuning.algorithms import nas_space

    enas = nas_experiment("enas-ui", "enas", ["python", "-c", ENAS_TRIAL, "--architecture=${trialParameters.neuralNetworkArchitecture}",
                                              "--nn_config=${trialParameters.neuralNetworkConfig}"], 4, NAS)
    darts_nas = {"graphConfig": {"numLayers": 2}, "operations": [
        {"operationType": "separable_convolution", "parameters": [{"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3", "5"]}}]},
        {"operationType": "max_pooling", "parameters": [{"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}}]},
        {"operationType": "skip_connection"}]}
    # Katib's DARTS example: the genotype collected as a metric by a filter of its own
    darts = nas_experiment("darts-ui", "darts", ["python", "-c", f"print({('Best-Genotype=' + KATIB_GENOTYPE)!r}); print('Validation-Accuracy=0.91')",
                                                 "${trialParameters.searchSpace}"], 1, darts_nas)
    darts["spec"]["objective"]["additionalMetricNames"] = ["Best-Genotype"]
    darts["spec"]["metricsCollectorSpec"]["source"] = {"filter": {"metricsFormat": [r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)",
                                                                                     r"([\w-]+)=(Genotype.*)"]}}
    # ketch's own DARTS trainer prints one operation per layer; not collected, so the page reads the log
    layers = nas_experiment("darts-log", "darts", ["python", "-c", "print('Best-Genotype=[\"max_pooling_3x3\", \"separable_convolution_5x5\"]'); "
                                                   "print('Validation-Accuracy=0.88')", "${trialParameters.searchSpace}"], 1, darts_nas)
    layers["spec"]["trialTemplate"]["retain"] = True
    with ketch.http() as c:
        for e in (enas, darts, layers):
            r = c.post("/apis/kubeflow.org/v1beta1/namespaces/default/experiments", json=e)
            assert r.status_code == 201, r.text
    for name in ("enas-ui", "darts-ui", "darts-log"):
        ketch.kubectl("wait", "--for=condition=Succeeded", f"experiment/{name}", "--timeout=240s", timeout=250)

    # ENAS: the rows are the best trial's layers, each operation and its parameters as nn_config names them
    exp = ketch.kjson("get", "experiment", "enas-ui")
    best = exp["status"]["currentOptimalTrial"]
    got = {a["name"]: a["value"] for a in best["parameterAssignments"]}
    arch = nas_space.parse_architecture(got["architecture"])
    emb = {o["opt_id"]: o for o in nas_space.operations(NAS)}
    page = dashboard.open("/tuning/default/enas-ui")
    panel = page.locator("#best-architecture")
    expect(panel).to_contain_text(best["bestTrialName"])
    rows = panel.locator("#nas-layers tbody tr")
    expect(rows).to_have_count(3)
    for i, row in enumerate(arch):
        op = emb[row[0]]
        cells = rows.nth(i).locator("td")
        expect(cells.nth(0)).to_have_text(str(i + 1))
        expect(cells.nth(1)).to_have_text(op["opt_type"])
        expect(cells.nth(2)).to_have_text(", ".join(f"{k}={v}" for k, v in op["opt_params"].items()))
        skips = [f"layer {j + 1}" for j, v in enumerate(row[1:]) if v]
        expect(cells.nth(3)).to_have_text(", ".join(skips) if skips else "none")
    expect(page.locator("#best-trial")).not_to_contain_text("embedding")  # nn_config is drawn, not dumped
    # each trial's row names its operations by layer
    expect(page.locator("#trials-table tbody tr", has_text=best["bestTrialName"])).to_contain_text(" > ".join(emb[r[0]]["opt_type"] for r in arch))
    expect(page.locator("#parallel-coordinates")).to_have_count(0)  # no hyperparameters to plot
    dashboard.shot("tuning-nas-enas")

    # DARTS, Katib's genotype: normal and reduce cells, an edge per row
    page = dashboard.open("/tuning/default/darts-ui")
    rows = page.locator("#best-architecture #nas-genotype tbody tr")
    expect(rows).to_have_count(8)
    expect(rows.nth(0)).to_have_text(re.compile(r"normal\s*0\s*c\(k-2\)\s*separable_convolution_3x3"))
    expect(rows.nth(3)).to_have_text(re.compile(r"normal\s*1\s*node 0\s*separable_convolution_5x5"))
    expect(rows.nth(6)).to_have_text(re.compile(r"reduce\s*1\s*node 0\s*skip_connection"))
    dashboard.shot("tuning-nas-darts")

    # DARTS, one operation per layer, read from the retained trial's log
    page = dashboard.open("/tuning/default/darts-log")
    rows = page.locator("#best-architecture #nas-genotype tbody tr")
    expect(rows).to_have_count(2, timeout=30000)
    expect(rows.nth(0)).to_have_text(re.compile(r"1\s*max_pooling_3x3"))
    expect(rows.nth(1)).to_have_text(re.compile(r"2\s*separable_convolution_5x5"))
