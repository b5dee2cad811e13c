"""Training and tuning pages in headless Chromium against a real ``ketch up``. The objects are written
through the API in the shapes the training and Katib operators write (their status via the status
subresource), and the pages must follow them live."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from dashboard_kinds import (
    TRAINING_CRDS,
    install,
    pytorchjob,
)


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
