"""Training and tuning pages in headless Chromium against a real ``ketch up``. The objects are written
through the API in the shapes the training and Katib operators write (their status via the status
subresource), and the pages must follow them live."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from dashboard_kinds import (
    TRAINING_CRDS,
    TUNING_CRDS,
    acc_of,
    experiment,
    install,
    pytorchjob,
    trial,
    trial_status,
)


def put_status(ketch, path: str, status: dict) -> None:
    with ketch.http() as c:
        obj = c.get(path).json()
        obj["status"] = status
        r = c.put(path + "/status", json=obj)
        assert r.status_code == 200, r.text


def test_training_job_list_and_detail_follow_the_job(ketch, dashboard):
    install(ketch, TRAINING_CRDS)
    with ketch.http() as c:
        assert c.post("/apis/kubeflow.org/v1/namespaces/default/pytorchjobs", json=pytorchjob("mnist")).status_code == 201
        for role, idx in [("master", 0), ("worker", 0), ("worker", 1)]:
            pod = {"metadata": {"name": f"mnist-{role}-{idx}", "labels": {"training.kubeflow.org/job-name": "mnist",
                   "training.kubeflow.org/replica-type": role, "training.kubeflow.org/replica-index": str(idx)}},
                   "spec": {"containers": [{"name": "pytorch", "image": "python"}]}}
            assert c.post("/api/v1/namespaces/default/pods", json=pod).status_code == 201
    page = dashboard.open("/training")
    row = page.locator("#training-jobs tbody tr", has_text="mnist")
    expect(row).to_contain_text("PyTorchJob")
    expect(row).to_contain_text("Created")
    base = "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs/mnist"
    put_status(ketch, base, {"conditions": [{"type": "Created", "status": "True", "reason": "PyTorchJobCreated"},
                                            {"type": "Running", "status": "True", "reason": "PyTorchJobRunning", "message": "job is running"}],
                             "replicaStatuses": {"Master": {"active": 1}, "Worker": {"active": 2}}})
    expect(row.locator(".badge")).to_have_text("Running")
    dashboard.shot("training-list")
    row.get_by_role("link", name="mnist").click()
    expect(page.locator("h1")).to_contain_text("PyTorchJob mnist")
    reps = page.locator("#replica-table")
    expect(reps.locator("tbody tr", has_text="Worker").locator("td").nth(1)).to_have_text("2")
    expect(reps.locator("tbody tr", has_text="Worker").locator("td").nth(2)).to_have_text("2")
    expect(page.locator("#conditions")).to_contain_text("job is running")
    expect(page.locator("#job-pods tbody tr")).to_have_count(3)
    # A restart and the job's success arrive live.
    put_status(ketch, "/api/v1/namespaces/default/pods/mnist-worker-1", {"phase": "Running", "containerStatuses": [
        {"name": "pytorch", "restartCount": 2, "ready": True, "image": "python", "imageID": "", "state": {"running": {}}}]})
    expect(page.locator("#job-pods tbody tr", has_text="mnist-worker-1").locator("td").nth(4)).to_have_text("2")
    with ketch.http() as c:
        c.post("/api/v1/namespaces/default/events", json={"metadata": {"name": "mnist.1"}, "reason": "SuccessfulCreatePod",
               "message": "Created pod: mnist-worker-1", "type": "Normal",
               "involvedObject": {"kind": "PyTorchJob", "name": "mnist", "namespace": "default", "apiVersion": "kubeflow.org/v1"}})
    expect(page.locator("#object-events")).to_contain_text("Created pod: mnist-worker-1")
    put_status(ketch, base, {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "False"},
                                            {"type": "Succeeded", "status": "True", "reason": "PyTorchJobSucceeded"}],
                             "replicaStatuses": {"Master": {"succeeded": 1}, "Worker": {"succeeded": 2}}})
    expect(reps.locator("tbody tr", has_text="Worker").locator("td").nth(3)).to_have_text("2")
    expect(page.locator("#conditions tbody tr", has_text="Succeeded")).to_contain_text("True")
    # The log button follows the pod's log endpoint (served by the kubelet when there is one).
    page.locator("#job-pods tbody tr", has_text="mnist-master-0").get_by_role("button", name="Logs").click()
    assert any("/pods/mnist-master-0/log?follow=true" in u for u in dashboard.requests) or page.wait_for_function(
        "() => document.getElementById('pod-log').textContent.length > 0")
    dashboard.shot("training-detail")


def test_tuning_experiment_progress_trials_best_and_plots(ketch, dashboard):
    install(ketch, TUNING_CRDS)
    ns = "default"
    with ketch.http() as c:
        assert c.post(f"/apis/kubeflow.org/v1beta1/namespaces/{ns}/experiments", json=experiment("hpo", max_trials=12)).status_code == 201
        for i in range(8):
            r = c.post(f"/apis/kubeflow.org/v1beta1/namespaces/{ns}/trials", json=trial("hpo", i))
            assert r.status_code == 201, r.text
    for i in range(8):
        put_status(ketch, f"/apis/kubeflow.org/v1beta1/namespaces/{ns}/trials/hpo-{i:04d}", trial_status(acc_of(i) if i < 6 else None))
    best = max(range(6), key=acc_of)
    exp_path = f"/apis/kubeflow.org/v1beta1/namespaces/{ns}/experiments/hpo"
    put_status(ketch, exp_path, {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}],
                                 "trials": 8, "trialsSucceeded": 6, "trialsRunning": 2,
                                 "currentOptimalTrial": {"bestTrialName": f"hpo-{best:04d}",
                                                         "parameterAssignments": trial("hpo", best)["spec"]["parameterAssignments"],
                                                         "observation": {"metrics": [{"name": "accuracy", "latest": str(acc_of(best))}]}}})
    page = dashboard.open("/tuning")
    row = page.locator("#tuning-experiments tbody tr", has_text="hpo")
    expect(row.locator(".progress")).to_contain_text("6/12")
    row.get_by_role("link", name="hpo").click()
    expect(page.locator("#best-trial")).to_contain_text(f"hpo-{best:04d}")
    trials = page.locator("#trials-table")
    expect(trials.locator("tbody tr")).to_have_count(8)
    expect(trials.locator("th")).to_have_text(["Trial", "State", "lr", "layers", "optimizer", "accuracy"])
    # Sorting by the objective, descending, puts the best trial first.
    trials.locator("th", has_text="accuracy").click()
    trials.locator("th", has_text="accuracy").click()
    expect(trials.locator("tbody tr").first).to_contain_text(f"hpo-{best:04d}")
    expect(page.locator("#objective-chart polyline")).to_have_count(2)
    expect(page.locator("#objective-chart circle")).to_have_count(12)  # 6 results + 6 best-so-far points
    expect(page.locator("#parallel-coordinates polyline.pc-line")).to_have_count(6)
    # A running trial finishing shows up live in the table and the plots.
    put_status(ketch, f"/apis/kubeflow.org/v1beta1/namespaces/{ns}/trials/hpo-0006", trial_status(0.5))
    expect(page.locator("#parallel-coordinates polyline.pc-line")).to_have_count(7)
    expect(trials.locator("tbody tr", has_text="hpo-0006")).to_contain_text("Succeeded")
    # The live update kept the user's sort: still best first, and the new result (0.5, the lowest) last.
    expect(trials.locator("tbody tr").first).to_contain_text(f"hpo-{best:04d}")
    expect(trials.locator("tbody tr").nth(6)).to_contain_text("hpo-0006")
    expect(page.locator("#tuning-summary .progress")).to_have_attribute("title", re.compile(r"^6/12"))
    dashboard.shot("tuning-experiment")
