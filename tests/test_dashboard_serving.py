"""The Models pages in headless Chromium against a real ``ketch up`` with the serving component: an
InferenceService's URL, readiness, revisions and traffic split, and a test prediction sent from the form
through ketch's gateway to a real model server.

ketch's kubelet is not on this branch, so the test plays the kubelet's part for the predictor Pods: it runs
each Pod's container command as a local process (what the local kubelet does) and reports it Running."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time

from playwright.sync_api import expect

from conftest import wait_for
from serving_helpers import train_sklearn


class PodRunner:
    """Runs the Pods of one InferenceService as processes and writes their status, until stopped."""

    def __init__(self, ketch, ns: str, isvc: str, logdir) -> None:
        self.ketch, self.ns, self.isvc, self.logdir = ketch, ns, isvc, logdir
        self.procs: dict[str, subprocess.Popen] = {}
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        with self.ketch.http() as c:
            while not self.stop_ev.is_set():
                pods = c.get(f"/api/v1/namespaces/{self.ns}/pods").json().get("items", [])
                for p in pods:
                    name = p["metadata"]["name"]
                    if not name.startswith(self.isvc) or name in self.procs:
                        continue
                    ctr = p["spec"]["containers"][0]
                    env = {**os.environ, **{e["name"]: e.get("value", "") for e in ctr.get("env", [])}}
                    log = open(self.logdir / f"{name}.log", "wb")
                    self.procs[name] = subprocess.Popen([*ctr["command"], *ctr.get("args", [])], env=env, stdout=log, stderr=subprocess.STDOUT)
                    p["status"] = {"phase": "Running", "podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}],
                                   "containerStatuses": [{"name": ctr["name"], "ready": True, "restartCount": 0, "image": ctr.get("image", ""), "imageID": "", "state": {"running": {}}}]}
                    c.put(f"/api/v1/namespaces/{self.ns}/pods/{name}/status", json=p)
                time.sleep(0.2)

    def stop(self) -> None:
        self.stop_ev.set()
        self.thread.join(5)
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def test_models_page_shows_url_traffic_and_sends_a_prediction(ketch, dashboard, tmp_path):
    model_dir = tmp_path / "iris"
    train_sklearn(model_dir)
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "iris", "namespace": "default"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{model_dir}"}}}}
    runner = PodRunner(ketch, "default", "iris", tmp_path)
    try:
        page = dashboard.open("/models")
        with ketch.http() as c:
            r = c.post("/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices", json=isvc)
            assert r.status_code == 201, r.text
        row = page.locator("#inferenceservices tbody tr", has_text="iris")
        expect(row).to_contain_text("sklearn")
        wait_for(lambda: ketch.kjson("get", "inferenceservice", "iris").get("status", {}).get("url"), timeout=60, what="isvc url")
        expect(row.locator(".badge")).to_have_text("Ready", timeout=30000)
        expect(row).to_contain_text("/serving/default/iris")
        dashboard.shot("models-list")
        row.get_by_role("link", name="iris").click()
        expect(page.locator("#isvc-url")).to_contain_text("/serving/default/iris")
        traffic = page.locator("#traffic tbody tr")
        expect(traffic).to_have_count(1)
        expect(traffic.first.locator("td").nth(3)).to_have_text("100")
        expect(page.locator("#traffic-chart rect.bar")).to_have_count(1)
        page.click("#predict-send")
        expect(page.locator("#predict-result")).to_contain_text('"predictions"', timeout=30000)
        expect(page.locator("#predict-result")).to_contain_text("POST /serving/default/iris/v1/models/iris:predict")
        # Request metrics over time, sampled from the model server through the gateway.
        page.click("#predict-send")
        expect(page.locator("#requests-chart")).to_be_visible(timeout=20000)
        expect(page.locator("#isvc-metrics figcaption").first).to_contain_text(re.compile(r"total [1-9]"), timeout=20000)
        assert any(u.endswith("/serving/default/iris/metrics") for u in dashboard.requests)
        # A bad body is refused in place, without a request.
        page.fill("#predict-body", "{not json")
        page.click("#predict-send")
        expect(page.locator("#predict-result .error")).to_contain_text("not JSON")
        dashboard.shot("models-detail")
    finally:
        runner.stop()
