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
