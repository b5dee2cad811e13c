"""The dashboard's foundations, end to end in headless Chromium against a real ``ketch up``: the app loads
from the package with no request leaving the host, the resources browser shows a CRD's printer columns, the
YAML editor shows a validation error in place and applies a fix, watches update views live, the namespace
switcher, search, events and the kfp.Client links' routes."""

from __future__ import annotations

import json
import re

from playwright.sync_api import expect

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.demo.ketch.io}
spec:
  group: demo.ketch.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              color: {type: string, enum: [red, green, blue]}
"""


def widget(name: str, ns: str = "default", size: int = 3, color: str = "red") -> str:
    return json.dumps({"apiVersion": "demo.ketch.io/v1", "kind": "Widget", "metadata": {"name": name, "namespace": ns},
                       "spec": {"size": size, "color": color}})


def test_app_is_served_from_the_package_with_a_csp(ketch):
    with ketch.http() as c:
        r = c.get("/")
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert '<script type="module" src="/ui/js/app.js">' in r.text
        js = c.get("/ui/js/app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert c.get("/ui/../component.py").status_code == 404
        assert c.get("/ui/js/nope.js").status_code == 404
        # The dashboard does not shadow the APIs.
        assert c.get("/version").json()["major"] == "1"
        assert c.get("/api").json()["kind"] == "APIVersions"
        assert c.get("/healthz").text == "ok"


def test_app_loads_with_no_external_requests(dashboard):
    page = dashboard.open("/")
    expect(page.locator("#nav a")).to_have_count(13)
    for label in ["Pipelines", "Runs", "Experiments", "Recurring runs", "Training jobs", "Tuning experiments",
                  "Models", "Notebooks", "Volumes", "Resources", "Events", "Monitoring", "Contributors"]:
        expect(page.locator("#nav").get_by_text(label, exact=True)).to_be_visible()
    expect(page.locator("#ns option[value=default]")).to_have_count(1)
    expect(page.locator("#live")).to_contain_text("live")  # the namespace watch stream is open
    dashboard.shot("home")
    assert any(u.endswith("/ui/js/app.js") for u in dashboard.requests)
    assert not dashboard.foreign_requests()


def test_resources_browser_lists_a_crd_with_printer_columns_and_updates_live(ketch, dashboard):
    ketch.kubectl("apply", "-f", "-", input=CRD)
    ketch.kubectl("wait", "--for=condition=Established", "crd/widgets.demo.ketch.io")
    ketch.kubectl("apply", "-f", "-", input=widget("alpha", size=2, color="green"))
    page = dashboard.open("/resources")
    page.fill("#kind-filter", "widget")
    page.get_by_role("link", name="Widget", exact=True).click()
    table = page.locator("table.resource-table[data-kind=widgets]")
    expect(table.locator("th")).to_have_text(["Name", "Size", "Color", "Age"])
    row = table.locator("tbody tr", has_text="alpha")
    expect(row.locator("td").nth(1)).to_have_text("2")
    expect(row.locator("td").nth(2)).to_have_text("green")
    # Live: a change made with kubectl shows up without a reload, and so do a new and a deleted object.
    ketch.kubectl("patch", "widget", "alpha", "--type=merge", "-p", '{"spec":{"size":7}}')
    expect(row.locator("td").nth(1)).to_have_text("7")
    ketch.kubectl("apply", "-f", "-", input=widget("beta", color="blue"))
    expect(table.locator("tbody tr", has_text="beta")).to_have_count(1)
    dashboard.shot("resources-widgets")
    ketch.kubectl("delete", "widget", "beta")
    expect(table.locator("tbody tr", has_text="beta")).to_have_count(0)
    # One watch stream for the list, not a poll: no repeated list requests.
    lists = [u for u in dashboard.requests if "/widgets" in u and "watch=true" not in u]
    assert len(lists) == 1, lists


def test_yaml_editor_shows_validation_error_in_place_and_applies_a_fix(ketch, dashboard):
    ketch.kubectl("apply", "-f", "-", input=CRD)
    ketch.kubectl("wait", "--for=condition=Established", "crd/widgets.demo.ketch.io")
    ketch.kubectl("apply", "-f", "-", input=widget("gamma", size=3))
    page = dashboard.open("/resources/demo.ketch.io/widgets/default/gamma")
    ta = page.locator("#yaml-text")
    expect(ta).to_have_value(re.compile(re.escape("size: 3")))
    text = ta.input_value()
    ta.fill(text.replace("size: 3", "size: 99"))
    page.click("#yaml-apply")
    err = page.locator("#yaml-errors .error")
    expect(err).to_contain_text("Invalid")
    cause = err.locator("li.cause[data-field='spec.size']")
    expect(cause).to_contain_text("10")
    expect(cause.locator("a.line")).to_be_visible()
    assert "size: 99" in ta.input_value()  # the user's text is kept
    # The textarea selection points at the offending line.
    sel = page.evaluate("() => { const t = document.getElementById('yaml-text'); return t.value.slice(t.selectionStart, t.selectionEnd); }")
    assert "size: 99" in sel
    dashboard.shot("yaml-validation-error")
    assert ketch.kjson("get", "widget", "gamma")["spec"]["size"] == 3  # nothing half-written
    ta.fill(ta.input_value().replace("size: 99", "size: 9"))
    page.click("#yaml-apply")
    expect(page.locator("#yaml-note")).to_contain_text("applied")
    expect(page.locator("#yaml-errors .error")).to_have_count(0)
    assert ketch.kjson("get", "widget", "gamma")["spec"]["size"] == 9
    # Server-side apply through the same editor.
    ta.fill(ta.input_value().replace("color: red", "color: blue"))
    page.click("#yaml-ssa")
    expect(page.locator("#yaml-note")).to_contain_text("applied")
    assert ketch.kjson("get", "widget", "gamma")["spec"]["color"] == "blue"
    # The page follows changes made elsewhere while the editor is untouched.
    ketch.kubectl("patch", "widget", "gamma", "--type=merge", "-p", '{"spec":{"size":4}}')
    expect(ta).to_have_value(re.compile(re.escape("size: 4")))


def test_create_from_yaml_and_events_view(ketch, dashboard):
    page = dashboard.open("/create")
    page.fill("#yaml-text", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: made-in-ui\n  namespace: default\ndata:\n  k: v\n")
    page.click("#yaml-apply")
    expect(page.locator("h1")).to_contain_text("ConfigMap made-in-ui")
    assert ketch.kjson("get", "configmap", "made-in-ui")["data"] == {"k": "v"}
    # A bad document is refused with the API's message and nothing is created.
    page = dashboard.open("/create")
    page.fill("#yaml-text", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n  namespace: default\n")
    page.click("#yaml-apply")
    expect(page.locator("#yaml-errors .error")).to_contain_text("metadata.name")
    assert ketch.kubectl("get", "configmap", "Bad_Name", check=False).returncode != 0
    # Events: one recorded through the API appears live on the events page.
    page = dashboard.open("/events")
    expect(page.locator("#events")).to_be_visible()
    with ketch.http() as c:
        r = c.post("/api/v1/namespaces/default/events", json={
            "metadata": {"name": "made-in-ui.1"}, "involvedObject": {"kind": "ConfigMap", "name": "made-in-ui", "namespace": "default"},
            "reason": "Tested", "message": "an <b>event</b> from the test", "type": "Warning"})
        assert r.status_code == 201, r.text
    row = page.locator("#events tbody tr", has_text="Tested")
    expect(row).to_contain_text("an <b>event</b> from the test")  # escaped, shown as text
    expect(page.locator("#events b")).to_have_count(0)
    dashboard.shot("events")


def test_namespace_switch_and_search(ketch, dashboard):
    ketch.kubectl("create", "namespace", "team-a")
    ketch.kubectl("create", "configmap", "cm-default", "-n", "default")
    ketch.kubectl("create", "configmap", "cm-team-a", "-n", "team-a")
    page = dashboard.open("/resources/core/configmaps")
    table = page.locator("table.resource-table[data-kind=configmaps]")
    expect(table.locator("tbody tr", has_text="cm-default")).to_have_count(1)
    expect(table.locator("tbody tr", has_text="cm-team-a")).to_have_count(0)
    page.select_option("#ns", "team-a")
    expect(table.locator("tbody tr", has_text="cm-team-a")).to_have_count(1)
    expect(table.locator("tbody tr", has_text="cm-default")).to_have_count(0)
    dashboard.shot("namespace-team-a")
    page.select_option("#ns", "*")
    expect(table.locator("tbody tr", has_text="cm-default")).to_have_count(1)
    expect(table.locator("tbody tr", has_text="cm-team-a")).to_have_count(1)
    expect(table.locator("th").first).to_have_text("Namespace")
    # A namespace created later appears in the switcher (watched, not polled).
    ketch.kubectl("create", "namespace", "team-b")
    expect(page.locator("#ns option[value=team-b]")).to_have_count(1)
    # The choice survives a reload.
    page.select_option("#ns", "team-a")
    page.reload()
    expect(page.locator("#ns")).to_have_value("team-a")
    page.fill("#search", "cm-team")
    page.press("#search", "Enter")
    res = page.locator("#search-results")
    expect(res.locator("tbody tr", has_text="cm-team-a")).to_have_count(1)
    res.get_by_role("link", name="cm-team-a").click()
    expect(page.locator("h1")).to_contain_text("ConfigMap cm-team-a")


def test_kfp_client_links_route_to_their_pages(dashboard):
    for path, title in [("/runs/details/abc-123", "Run"), ("/experiments/details/e-1", "Experiment"),
                        ("/pipelines/details/p-1", "Pipeline")]:
        page = dashboard.open(path)
        # Without a pipelines backend the page says so; with one, it loads the object named in the link.
        expect(page.locator(".page h1")).to_have_count(1)
        assert any(f"/apis/v2beta1/{path.split('/')[1]}/{path.split('/')[-1]}" in u for u in dashboard.requests), path
        del title


def test_user_strings_are_escaped(ketch, dashboard):
    ketch.kubectl("create", "configmap", "xss", "--from-literal=k=<img src=x onerror=alert(1)>")
    ketch.kubectl("label", "configmap", "xss", "note=x")
    page = dashboard.open("/resources/core/configmaps/default/xss")
    expect(page.locator("#yaml-text")).to_have_value(re.compile(re.escape("<img src=x onerror=alert(1)>")))
    assert page.locator("img").count() == 0
    with ketch.http() as c:
        assert c.get(dashboard.base + "/").headers["x-content-type-options"] == "nosniff"


def test_yaml_round_trips_tricky_values_through_the_editor(ketch, dashboard):
    """What the editor shows is what the server reads back: saving an untouched object changes nothing."""
    data = {"multi": "line one\nline two\n", "nofinal": "a\nb", "bool": "true", "num": "123", "colon": "a: b",
            "hash": "x #y", "empty": "", "lead": " spaced", "quote": "it's \"q\"", "uni": "héllo ✓", "dash": "- x",
            "star": "*ref", "brace": "{a}", "null": "null", "blanklines": "a\n\nb\n"}
    with ketch.http() as c:
        r = c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "tricky", "labels": {"app.kubernetes.io/name": "x"}}, "data": data})
        assert r.status_code == 201, r.text
        rv = r.json()["metadata"]["resourceVersion"]
    page = dashboard.open("/resources/core/configmaps/default/tricky")
    expect(page.locator("#yaml-text")).to_have_value(re.compile("tricky"))
    page.click("#yaml-apply")
    expect(page.locator("#yaml-note")).to_contain_text("applied")
    got = ketch.kjson("get", "configmap", "tricky")
    assert got["data"] == data
    assert got["metadata"]["labels"] == {"app.kubernetes.io/name": "x"}
    assert got["metadata"]["resourceVersion"] != rv or got["data"] == data


def test_assets_ship_in_the_package_and_name_no_other_host():
    """Everything the app loads is a file under ketch/ui/static (package-data ``ui/static/**/*``), and no
    asset names another host (the only absolute URL is the SVG namespace, which is never fetched)."""
    from pathlib import Path

    import ketch.ui

    static = Path(ketch.ui.__file__).parent / "static"
    files = [p for p in static.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".js", ".css", ".html"}
    for p in files:
        urls = set(re.findall(r"https?://[^\s\"'`)]+", p.read_text()))
        assert urls <= {"http://www.w3.org/2000/svg"}, (p, urls)
        for dep in re.findall(r"""from\s+["'](\.{1,2}/[^"']+)["']""", p.read_text()):
            assert (p.parent / dep).resolve().is_file(), (p, dep)


def test_watches_back_off_while_the_server_is_down_and_resume_after(ketch, dashboard):
    """No polling storm when ketch goes away, and the views pick up where they were when it comes back."""
    import time

    page = dashboard.open("/resources/core/configmaps")
    table = page.locator("table.resource-table[data-kind=configmaps]")
    expect(table).to_be_visible()
    expect(page.locator("#live")).to_contain_text("live")
    ketch.kill9()
    before = len(dashboard.requests)
    time.sleep(4)
    tries = len(dashboard.requests) - before
    # Two watches (namespaces, configmaps) backing off from 0.5 s: a handful of tries, not hundreds.
    assert tries <= 16, dashboard.requests[before:]
    expect(page.locator("#live")).not_to_contain_text("live")
    ketch.start()
    ketch.kubectl("create", "configmap", "after-restart")
    expect(table.locator("tbody tr", has_text="after-restart")).to_have_count(1, timeout=40000)
    expect(page.locator("#live")).to_contain_text("live")


def test_pod_page_follows_the_log(ketch, dashboard):
    """A Pod run by the local kubelet: its page tails the log live while the process writes it."""
    script = "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.7)\n"
    ketch.kubectl("run", "ticker", "--image=python:3.11", "--restart=Never", "--command", "--", "python", "-c", script)
    page = dashboard.open("/resources/core/pods/default/ticker")
    expect(page.locator("#pod-container")).to_have_value("ticker")
    expect(page.locator("#pod-log")).to_contain_text("tick 2", timeout=30000)
    expect(page.locator(".obj-head .badge").first).to_have_text("Succeeded", timeout=30000)
    dashboard.shot("pod-log")


def test_home_shows_what_is_running_activity_and_the_machine(ketch, dashboard):
    """Home: running workloads across namespaces ("All namespaces" chosen), recent events, the node's
    capacity; log out ends the session."""
    import sys

    ketch.kubectl("create", "namespace", "kubeflow-demo")
    ketch.kubectl("create", "job", "sleeper", "-n", "kubeflow-demo", "--image=python:3.11", "--", sys.executable, "-c", "import time; time.sleep(120)")
    page = dashboard.open("/")
    page.select_option("#ns", "*")
    running = page.locator("#running-table tbody tr", has_text="sleeper")
    expect(running).to_have_count(1)
    expect(running).to_contain_text("kubeflow-demo")
    expect(page.locator("#activity-table")).to_contain_text("SuccessfulCreate")
    expect(page.locator("#node-table")).to_contain_text("GiB")
    dashboard.shot("home-running")
    # a namespace chosen is remembered and honoured: nothing runs in default
    page.select_option("#ns", "default")
    expect(page.locator("#running-table")).to_contain_text("Nothing is running in namespace default")
    page.reload()
    expect(page.locator("#ns")).to_have_value("default")
    page.click("#logout")
    page.wait_for_url(dashboard.base + "/login")
    page.goto(dashboard.base + "/")
    page.wait_for_url(dashboard.base + "/login")  # the session is gone
    ketch.kubectl("delete", "job", "sleeper", "-n", "kubeflow-demo")
