"""The dashboard's Monitoring page in headless Chromium against a real ``ketch up``: it samples ketch's
/metrics and plots the API's latency and request rate over time while real requests arrive."""

from __future__ import annotations

import threading

from playwright.sync_api import expect


def test_monitoring_page_plots_api_latency(ketch, dashboard):
    page = dashboard.open("/monitoring")
    expect(page.get_by_role("link", name="Monitoring")).to_have_class("active")
    stop = threading.Event()

    def load():
        with ketch.http() as c:
            while not stop.is_set():
                c.get("/api/v1/namespaces/default/configmaps")
                stop.wait(0.05)

    t = threading.Thread(target=load)
    t.start()
    try:
        line = page.locator("#api-latency-chart polyline").first
        expect(line).to_be_attached(timeout=20000)
        # a line over at least three intervals, for LIST among the verbs
        page.wait_for_function("() => [...document.querySelectorAll('#api-latency-chart polyline')]"
                               ".some(p => p.getAttribute('points').trim().split(' ').length >= 3)", timeout=20000)
        expect(page.locator("figure", has=page.locator("#api-rate-chart")).locator("figcaption")).to_contain_text("LIST")
        expect(page.locator("#workqueue-chart")).to_be_attached()
        dashboard.shot("monitoring")
    finally:
        stop.set()
        t.join(5)
    assert any(u.endswith("/metrics") for u in dashboard.requests)
