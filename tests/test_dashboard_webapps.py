"""The web apps a Kubeflow user expects, driven in a real browser: the Jupyter web app's spawner form with a
PodDefault as a configuration, the notebooks list's start/stop/delete/connect, the Volumes web app, and a
Katib Experiment created from the form running real trial processes."""

from __future__ import annotations

import json
import sys
import textwrap

from playwright.sync_api import expect

from conftest import wait_for

# A "notebook image" that is a tiny HTTP server on NB_PORT answering with the env the PodDefault set.
TINY_SERVER = textwrap.dedent("""
    import http.server, os
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ('tiny-notebook ' + self.path + ' GREETING=' + os.environ.get('GREETING', '')).encode()
            self.send_response(200); self.send_header('Content-Type', 'text/plain'); self.end_headers(); self.wfile.write(body)
    http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['NB_PORT'])), H).serve_forever()
    """)
IMAGE = "example.com/tiny-notebook:1"

PODDEFAULT = """
apiVersion: kubeflow.org/v1alpha1
kind: PodDefault
metadata: {name: add-greeting, namespace: default}
spec:
  desc: Say hello from the PodDefault
  selector:
    matchLabels: {add-greeting: "true"}
  env:
  - {name: GREETING, value: hello-from-poddefault}
"""


def test_spawner_form_creates_a_notebook_with_a_poddefault_and_volumes(ketch, dashboard):
    k = ketch
    (k.home / "images.yaml").write_text(
        f"images:\n  - match: 'example.com/tiny-notebook*'\n    command: {json.dumps([sys.executable, '-c', TINY_SERVER])}\n")
    (k.home / "spawner_ui_config.yaml").write_text(
        f"spawnerFormDefaults:\n  image:\n    value: {IMAGE}\n    options: [{IMAGE}, kubeflownotebookswg/jupyter-scipy:v1.9.0]\n")
    k.kubectl("apply", "-f", "-", input=PODDEFAULT)
    k.kubectl("apply", "-f", "-", input="apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: shared-data, namespace: default}\n"
              "spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n")
    page = dashboard.open("/notebooks")
    expect(page.locator("#notebooks")).to_contain_text("No notebooks in namespace default.")
    page.click("#nb-new")
    expect(page.locator("#nb-image")).to_have_value(IMAGE)  # the list and default come from spawner_ui_config.yaml
    page.fill("#nb-name", "nb1")
    page.fill("#nb-cpu", "0.1")
    page.fill("#nb-memory", "256Mi")
    expect(page.locator(".vol-row.workspace .vol-name")).to_have_value("nb1-workspace")
    page.fill(".vol-row.workspace .vol-size", "1Gi")
    page.click("#nb-add-data")
    data = page.locator(".vol-row.data")
    data.locator(".vol-type").select_option("existing")
    data.locator(".vol-existing").select_option("shared-data")
    data.locator(".vol-mount").fill("/home/jovyan/shared")
    page.locator("#nb-configurations label", has_text="Say hello from the PodDefault").locator("input").check()
    dashboard.shot("notebook-spawner")
    page.click("#nb-launch")
    page.wait_for_url("**/#/notebooks")

    nb = k.kjson("get", "notebook", "nb1")
    assert nb["spec"]["template"]["metadata"]["labels"] == {"add-greeting": "true"}
    c = nb["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == IMAGE and c["resources"]["requests"] == {"cpu": "0.1", "memory": "256Mi"}
    assert sorted(m["mountPath"] for m in c["volumeMounts"]) == ["/home/jovyan", "/home/jovyan/shared"]
    claims = sorted(v["persistentVolumeClaim"]["claimName"] for v in nb["spec"]["template"]["spec"]["volumes"])
    assert claims == ["nb1-workspace", "shared-data"]
    assert k.kjson("get", "pvc", "nb1-workspace")["spec"]["resources"]["requests"]["storage"] == "1Gi"

    row = page.locator("#notebooks tbody tr", has_text="nb1")
    expect(row.locator("td").first).to_have_text("Running", timeout=60000)
    pod = k.kjson("get", "pod", "nb1-0")
    assert {"name": "GREETING", "value": "hello-from-poddefault"} in pod["spec"]["containers"][0]["env"]
    assert "poddefault.admission.kubeflow.org/poddefault-add-greeting" in pod["metadata"]["annotations"]
    connect = row.locator("a.nb-connect")
    assert connect.get_attribute("href") == "/notebook/default/nb1/lab"
    dashboard.shot("notebooks-list")
    # Connect reaches the notebook's own server through ketch's proxy, with the browser's session.
    r = page.context.request.get(k.url + connect.get_attribute("href"))
    assert r.status == 200 and "tiny-notebook /notebook/default/nb1/lab GREETING=hello-from-poddefault" in r.text(), r.text()

    # The Volumes web app shows which notebooks use each claim.
    page.goto(f"{k.url}/#/volumes")
    expect(page.locator("#volumes tbody tr", has_text="nb1-workspace").locator(".used-by")).to_have_text("nb1", timeout=15000)
    expect(page.locator("#volumes tbody tr", has_text="shared-data").locator(".used-by")).to_have_text("nb1")
    page.fill("#pvc-name", "scratch")
    page.fill("#pvc-size", "2Gi")
    page.click("#pvc-create")
    scratch = page.locator("#volumes tbody tr", has_text="scratch")
    expect(scratch.locator(".used-by")).to_have_text("—")
    assert k.kjson("get", "pvc", "scratch")["spec"]["resources"]["requests"]["storage"] == "2Gi"
    dashboard.shot("volumes")
    page.on("dialog", lambda d: d.accept())
    scratch.locator("button.pvc-delete").click()
    expect(scratch).to_have_count(0)
    assert k.kubectl("get", "pvc", "scratch", check=False).returncode != 0

    # Stop, start, delete from the list.
    page.goto(f"{k.url}/#/notebooks")
    row = page.locator("#notebooks tbody tr", has_text="nb1")
    row.locator("button.nb-stop").click()
    expect(row.locator("td").first).to_have_text("Stopped", timeout=60000)
    assert "kubeflow-resource-stopped" in k.kjson("get", "notebook", "nb1")["metadata"]["annotations"]
    wait_for(lambda: k.kubectl("get", "pod", "nb1-0", check=False).returncode != 0, timeout=60, what="pod stopped")
    row.locator("button.nb-start").click()
    expect(row.locator("td").first).to_have_text("Running", timeout=60000)
    row.locator("button.nb-delete").click()
    expect(page.locator("#notebooks tbody tr", has_text="nb1")).to_have_count(0, timeout=30000)


def test_spawner_form_reports_a_bad_name_and_makes_no_volume(ketch, dashboard):
    page = dashboard.open("/notebooks/new")
    page.fill("#nb-name", "Bad_Name")
    page.fill(".vol-row.workspace .vol-name", "ws-bad")
    page.click("#nb-launch")
    expect(page.locator("#nb-result .error")).to_contain_text("metadata.name")
    assert ketch.kubectl("get", "pvc", "ws-bad", check=False).returncode != 0  # nothing half-made


def test_experiment_from_the_form_runs_its_trials(ketch, dashboard):
    k = ketch
    page = dashboard.open("/tuning")
    page.get_by_role("link", name="New experiment").click()
    page.fill("#exp-name", "formexp")
    page.select_option("#exp-algorithm", "random")
    expect(page.locator("#exp-settings .setting-name")).to_have_value("random_state")  # the algorithm's settings
    page.locator("#exp-settings .setting-value").fill("7")
    page.fill("#exp-max-trials", "3")
    page.fill("#exp-parallel-trials", "2")
    page.click("#exp-add-param")
    p2 = page.locator("#exp-params .param-row").nth(1)
    p2.locator(".param-name").fill("optimizer")
    p2.locator(".param-type").select_option("categorical")
    p2.locator(".param-list").fill("sgd, adam")
    page.click("#exp-show-yaml")
    expect(page.locator("#exp-preview")).to_contain_text("trialTemplate:")
    dashboard.shot("tuning-new-experiment")
    page.click("#exp-create")
    page.wait_for_url("**/#/tuning/default/formexp")

    e = k.kjson("get", "experiment", "formexp")
    spec = e["spec"]
    assert spec["objective"] == {**spec["objective"], "type": "minimize", "objectiveMetricName": "loss"}
    assert spec["algorithm"]["algorithmSettings"] == [{"name": "random_state", "value": "7"}]
    assert [p["name"] for p in spec["parameters"]] == ["lr", "optimizer"]
    assert spec["parameters"][1]["feasibleSpace"]["list"] == ["sgd", "adam"]
    assert spec["trialTemplate"]["primaryContainerName"] == "training-container"

    def done():
        x = k.kjson("get", "experiment", "formexp")
        return any(c["type"] == "Succeeded" and c["status"] == "True" for c in x.get("status", {}).get("conditions", [])) and x

    e = wait_for(done, timeout=120, what="experiment from the form succeeded")
    assert e["status"]["trialsSucceeded"] == 3
    best = e["status"]["currentOptimalTrial"]
    lr = float(next(a["value"] for a in best["parameterAssignments"] if a["name"] == "lr"))
    assert float(best["observation"]["metrics"][0]["latest"]) == __import__("pytest").approx((lr - 0.03) ** 2)
    expect(page.locator("#best-trial")).to_contain_text(best["bestTrialName"], timeout=15000)
    expect(page.locator("#trials-table tbody tr")).to_have_count(3)
    dashboard.shot("tuning-experiment-from-form")


def test_experiment_form_shows_the_field_katib_refuses(ketch, dashboard):
    page = dashboard.open("/tuning/new")
    page.fill("#exp-name", "badexp")
    page.locator("#exp-params .param-row .param-max").fill("")
    page.click("#exp-create")
    expect(page.locator("#exp-result .error")).to_be_visible()
    expect(page.locator("#exp-result")).to_contain_text("feasibleSpace")
    assert ketch.kubectl("get", "experiment", "badexp", check=False).returncode != 0
