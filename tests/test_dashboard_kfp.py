"""The pipelines pages end to end in headless Chromium against a real ``ketch up`` (pipelines backend,
local kubelet): upload a compiled pipeline, start a run from the parameter form, watch its graph turn
green, open a task's parameters, live log and artifacts (Metrics table, confusion matrix, ROC), open the
links kfp.Client prints, compare two runs, and create an experiment and a recurring run."""

import re

from kfp import compiler
from playwright.sync_api import expect

from conftest import wait_for
from dashboard_pipeline import demo


def test_upload_run_graph_task_panel_and_compare(ketch, dashboard, tmp_path):
    package = tmp_path / "dash-demo.yaml"
    compiler.Compiler().compile(demo, str(package))
    page = dashboard.open("/pipelines/upload")
    page.set_input_files("#upload-file", str(package))
    page.fill("#upload-name", "dash-demo")
    page.click("#upload-submit")
    expect(page.locator("h1")).to_have_text("dash-demo")
    expect(page.locator("#dag g.node")).to_have_count(2)  # the graph preview of the uploaded version
    # train's output artifacts as their own nodes, with task -> artifact edges
    expect(page.locator("#dag g.artifact-node")).to_have_count(2)
    expect(page.locator('#dag g.artifact-node[data-artifact="train/cls"]')).to_have_attribute("data-type", "ClassificationMetrics")
    dashboard.shot("kfp-pipeline")
    page.get_by_role("link", name="Create run").click()
    expect(page.locator("#run-params input[name=n]")).to_have_value("10")
    page.fill("#run-name", "from-the-form")
    page.fill("#run-params input[name=n]", "30")
    page.fill("#run-params input[name=lr]", "0.02")
    page.click("#run-submit")
    expect(page.locator("h1")).to_have_text("from-the-form")
    # The graph turns green as the tasks finish (the page follows the run while it is unfinished).
    for task in ("prep", "train"):
        expect(page.locator(f"#dag g.node[data-task={task}]")).to_have_attribute("data-state", "SUCCEEDED", timeout=60000)
    expect(page.locator(".page .badge").first).to_have_text("SUCCEEDED")
    run_id = page.url.rsplit("/", 1)[1]
    # Followed by a watch on the PipelineRun, not by polling the REST API.
    assert any("/pipelineruns?" in u and "watch=true" in u for u in dashboard.requests)
    gets = [u for u in dashboard.requests if u.endswith(f"/apis/v2beta1/runs/{run_id}")]
    assert len(gets) < 40, len(gets)
    with ketch.http() as c:
        run = c.get(f"/apis/v2beta1/runs/{run_id}").json()
    assert run["runtime_config"]["parameters"] == {"n": 30, "lr": 0.02}
    # The task panel: actual inputs and outputs, the pod's log, the artifacts rendered.
    page.locator("#dag g.node[data-task=prep]").click()
    panel = page.locator("#task-panel")
    expect(panel.locator("#task-inputs")).to_contain_text("30")
    expect(panel.locator("#task-outputs")).to_contain_text("60")
    expect(panel.locator("#task-log")).to_contain_text("preparing 30 rows", timeout=20000)
    page.locator("#dag g.node[data-task=train]").click()
    expect(panel.locator("#task-log")).to_contain_text("training on 60 rows with lr=0.02", timeout=20000)
    expect(panel.locator("#metrics-table tbody tr", has_text="accuracy")).to_contain_text("0.512")
    expect(panel.locator("#confusion-matrix rect")).to_have_count(4)
    expect(panel.locator("#roc-curve polyline")).to_have_count(1)
    assert any("/log?follow=true" in u for u in dashboard.requests)
    # An artifact node opens that artifact's preview, drawn by the task panel's renderer.
    page.locator('#dag g.artifact-node[data-artifact="train/cls"]').click()
    preview = panel.locator("#artifact-preview")
    expect(preview.locator("#confusion-matrix rect")).to_have_count(4)
    expect(preview.locator("#roc-curve polyline")).to_have_count(1)
    page.locator('#dag g.artifact-node[data-artifact="train/metrics"]').click()
    expect(panel.locator("#artifact-preview #metrics-table tbody tr", has_text="accuracy")).to_contain_text("0.512")
    dashboard.shot("kfp-run")

    # A second run from the real SDK; the links kfp.Client prints open the right pages.
    client = ketch.kfp_client()
    r2 = client.create_run_from_pipeline_package(str(package), arguments={"n": 5, "lr": 0.1}, run_name="from-the-sdk")
    client.wait_for_run_completion(r2.run_id, timeout=60)
    page = dashboard.open(f"/runs/details/{r2.run_id}")
    expect(page.locator("h1")).to_have_text("from-the-sdk")
    expect(page.locator("#dag g.node[data-task=train]")).to_have_attribute("data-state", "SUCCEEDED")
    exp_id = client.get_run(r2.run_id).experiment_id
    page = dashboard.open(f"/experiments/details/{exp_id}")
    expect(page.locator("#experiment-runs tbody tr", has_text="from-the-sdk")).to_have_count(1)
    pid = client.get_pipeline_id("dash-demo")
    page = dashboard.open(f"/pipelines/details/{pid}")
    expect(page.locator("h1")).to_have_text("dash-demo")

    # Runs list: filters, then compare the two runs.
    page = dashboard.open("/runs")
    runs = page.locator("#runs")
    expect(runs.locator("tbody tr")).to_have_count(2)
    page.fill("#run-filter", "sdk")
    expect(runs.locator("tbody tr")).to_have_count(1)
    page.fill("#run-filter", "")
    page.select_option("#run-state", "SUCCEEDED")
    expect(runs.locator("tbody tr")).to_have_count(2)
    for row in runs.locator("tbody tr").all():
        row.locator("input.pick").check()
    page.click("#compare")
    params = page.locator("#compare-params")
    expect(params.locator("tr", has_text="lr")).to_contain_text("0.02")
    expect(params.locator("tr", has_text="lr")).to_contain_text("0.1")
    expect(params.locator("tr.differs")).to_have_count(2)
    metrics = page.locator("#compare-metrics")
    expect(metrics.locator("tr", has_text="train.accuracy")).to_contain_text("0.512")
    # Scalar metrics as one grouped bar chart: two metrics (accuracy, rows) x two runs.
    expect(page.locator("#compare-bars rect.bar")).to_have_count(4)
    expect(page.locator('#compare-bars rect.bar[data-metric="train.accuracy"]')).to_have_count(2)
    # Both runs' ROC curves overlaid on one plot, the confusion matrices side by side.
    expect(page.locator("#compare-roc polyline")).to_have_count(2)
    expect(page.locator("#compare-roc .legend")).to_have_count(2)
    expect(page.locator("#compare-confusion svg.confusion")).to_have_count(2)
    dashboard.shot("kfp-compare")


def test_experiments_and_recurring_runs(ketch, dashboard, tmp_path):
    package = tmp_path / "dash-demo.yaml"
    compiler.Compiler().compile(demo, str(package))
    client = ketch.kfp_client()
    client.upload_pipeline(str(package), pipeline_name="dash-demo")
    page = dashboard.open("/experiments")
    page.fill("#exp-name", "tuning-week")
    page.get_by_role("button", name="Create experiment").click()
    expect(page.locator("h1")).to_have_text("tuning-week")
    page = dashboard.open("/recurringruns")
    page.fill("#rr-name", "nightly")
    page.select_option("#rr-experiment", label="tuning-week")
    page.fill("#rr-interval", "3600")
    page.click("#rr-submit")
    row = page.locator("#recurring-runs tbody tr", has_text="nightly")
    expect(row.locator(".badge")).to_have_text(re.compile("ENABLE"))
    row.locator("button.toggle").click()
    expect(row.locator(".badge")).to_have_text(re.compile("DISABLE"))
    rr = wait_for(lambda: [x for x in (client.list_recurring_runs().recurring_runs or []) if x.display_name == "nightly"], what="recurring run")
    assert rr[0].trigger.periodic_schedule.interval_second == "3600" or rr[0].trigger.periodic_schedule.interval_second == 3600
    assert str(rr[0].mode).endswith("DISABLE") or str(rr[0].status).endswith("DISABLED")
    dashboard.shot("kfp-recurring")


def test_html_markdown_and_dataset_artifacts(ketch, dashboard):
    from dashboard_pipeline import with_report

    client = ketch.kfp_client()
    r = client.create_run_from_pipeline_func(with_report, arguments={"n": 10, "lr": 0.1}, run_name="with-report")
    client.wait_for_run_completion(r.run_id, timeout=60)
    page = dashboard.open(f"/runs/details/{r.run_id}")
    expect(page.locator("#dag g.node")).to_have_count(3)
    page.locator("#dag g.node[data-task=report]").click()
    arts = page.locator("#task-artifacts")
    html = arts.locator(".artifact[data-type='system.HTML'] iframe")
    expect(html).to_have_attribute("sandbox", "")
    expect(page.frame_locator(".artifact[data-type='system.HTML'] iframe").locator("#acc")).to_have_text("accuracy 0.52")
    md = page.frame_locator(".artifact[data-type='system.Markdown'] iframe")
    expect(md.locator("h1")).to_have_text("Notes")
    expect(md.locator("li").nth(1)).to_have_text("<b>not bold</b>")
    expect(arts.locator(".dataset-preview tr")).to_have_count(3)
    expect(arts.locator(".dataset-preview tr").nth(2)).to_have_text("34")
    # Lineage of the train task's metrics artifact: produced by train, in this run.
    page.locator("#dag g.node[data-task=train]").click()
    box = page.locator("#task-artifacts .artifact[data-type='system.Metrics'] details.lineage-box")
    box.locator("summary").click()
    expect(box.locator("ul.produced li")).to_contain_text("train")
    expect(box.locator("ul.produced li a")).to_have_attribute("href", f"#/runs/details/{r.run_id}")
    page.locator("#dag g.node[data-task=report]").click()
    assert page.title() == "ketch"
    dashboard.shot("kfp-report-artifacts")
    # The content route serves only artifacts recorded in a run, as inert text.
    with ketch.http() as c:
        run = c.get(f"/apis/v2beta1/runs/{r.run_id}").json()
        rep = next(t for t in run["run_details"]["task_details"] if t.get("task_name") == "report")
        aid = rep["outputs"]["page"]["artifact_ids"][0]
        got = c.get(f"/ui/artifacts/{r.run_id}/{aid}")
        assert got.status_code == 200 and "accuracy 0.52" in got.text
        assert got.headers["content-type"].startswith("text/plain")
        assert "sandbox" in got.headers["content-security-policy"]
        assert c.get(f"/ui/artifacts/{r.run_id}/nope").status_code == 404
        assert c.get("/ui/artifacts/no-such-run/x").status_code == 404


def test_terminate_a_running_run_and_a_refused_upload(ketch, dashboard, tmp_path):
    from dashboard_pipeline import napping

    client = ketch.kfp_client()
    r = client.create_run_from_pipeline_func(napping, arguments={"seconds": 120}, run_name="napper")
    page = dashboard.open(f"/runs/details/{r.run_id}")
    expect(page.locator("#dag g.node[data-task=nap]")).to_have_attribute("data-state", "RUNNING", timeout=30000)
    page.locator("#dag g.node[data-task=nap]").click()
    expect(page.locator("#task-pod")).not_to_have_text("—")
    # Pause: the running task goes on, the run shows PAUSED and the button offers Resume
    page.click("#run-pause")
    expect(page.locator(".page .badge").first).to_have_text("PAUSED", timeout=30000)
    assert client.get_run(r.run_id).state == "PAUSED"
    expect(page.locator("#run-pause")).to_have_text("Resume")
    page.click("#run-pause")
    expect(page.locator(".page .badge").first).to_have_text("RUNNING", timeout=30000)
    page.click("#run-terminate")
    expect(page.locator(".page .badge").first).to_have_text(re.compile("CANCEL"), timeout=30000)
    assert client.get_run(r.run_id).state in ("CANCELING", "CANCELED")
    # actions only where they apply: a canceled run cannot be terminated again, and may be retried
    expect(page.locator(".page .badge").first).to_have_text("CANCELED", timeout=30000)
    expect(page.locator("#run-terminate")).to_be_disabled()
    expect(page.locator("#run-retry")).to_be_enabled()
    dashboard.shot("kfp-terminated")
    # A file the backend cannot read is refused with its message, in place.
    bad = tmp_path / "broken.yaml"
    bad.write_text("pipelineInfo: {name: x}\nroot: 3\n")
    page = dashboard.open("/pipelines/upload")
    page.set_input_files("#upload-file", str(bad))
    page.click("#upload-submit")
    expect(page.locator("#upload-result .error")).to_be_visible()
    assert not [p for p in (client.list_pipelines().pipelines or []) if p.display_name == "broken"]
