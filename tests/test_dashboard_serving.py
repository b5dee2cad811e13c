"""The Models pages in headless Chromium against a real ``ketch up`` with the serving component: an
InferenceService's URL, readiness, revisions and traffic split, and a test prediction sent from the form
through ketch's gateway to a real model server. The predictor Pods are run by ketch's local kubelet."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from conftest import wait_for
from serving_helpers import train_sklearn


def test_models_page_shows_url_traffic_and_sends_a_prediction(ketch, dashboard, tmp_path):
    model_dir = tmp_path / "iris"
    train_sklearn(model_dir)
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "iris", "namespace": "default"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{model_dir}"}}}}
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
