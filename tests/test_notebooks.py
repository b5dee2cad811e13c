"""Kubeflow Notebooks: a kubeflow.org/v1 Notebook applied with kubectl runs a real JupyterLab (from its own
virtualenv, mapped to the image in images.yaml), reached at /notebook/<ns>/<name>/ on ketch's port: its
REST API, a kernel executing code over the proxied WebSocket, the workspace PVC, stop and start."""

from __future__ import annotations

import json
import os
import re
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import make_ketch, wait_for

VENV = Path(os.environ.get("KETCH_TEST_JUPYTER_VENV", "/tmp/jupyter-venv"))

pytestmark = pytest.mark.skipif(not (VENV / "bin" / "jupyter").exists(), reason=f"no JupyterLab venv at {VENV} (scripts/test.sh builds it)")

NOTEBOOK = textwrap.dedent("""
    apiVersion: v1
    kind: PersistentVolumeClaim
    metadata: {name: ws-lab, namespace: default}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
    ---
    apiVersion: kubeflow.org/v1
    kind: Notebook
    metadata:
      name: lab
      namespace: default
      labels: {app: lab}
    spec:
      template:
        spec:
          containers:
          - name: lab
            image: kubeflownotebookswg/jupyter-scipy:v1.9.0
            resources: {requests: {cpu: "0.5", memory: 1Gi}}
            volumeMounts:
            - {name: workspace, mountPath: /home/jovyan}
          volumes:
          - name: workspace
            persistentVolumeClaim: {claimName: ws-lab}
    """)


@pytest.fixture(scope="module")
def k(tmp_path_factory):
    kt = make_ketch(tmp_path_factory.mktemp("nb"))
    (kt.home / "images.yaml").write_text(f"images:\n  - match: '*jupyter*'\n    venv: {VENV}\n")
    kt.start()
    try:
        yield kt
    finally:
        kt.stop()


def ready(k) -> int:
    return (k.kjson("get", "notebook", "lab").get("status") or {}).get("readyReplicas", 0)


def run_code(url: str, kernel: str, code: str, cookies: dict, headers: dict | None = None) -> str:
    """Execute ``code`` in a kernel through the proxied channels WebSocket, as JupyterLab's frontend does.
    (The synchronous client: Playwright's fixtures may hold an event loop in this thread.)"""
    from websockets.sync.client import connect

    cookie = "; ".join(f"{a}={b}" for a, b in cookies.items())
    msg_id = uuid.uuid4().hex
    with connect(f"{url.replace('http', 'ws', 1)}/api/kernels/{kernel}/channels", additional_headers={"Cookie": cookie, **(headers or {})}) as ws:
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "t", "session": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
        }))
        out = []
        while True:
            m = json.loads(ws.recv(timeout=60))
            if m.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "stream":
                out.append(m["content"]["text"])
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                return "".join(out)


def test_notebook_runs_jupyter_behind_the_notebook_path(k):
    k.kubectl("apply", "-f", "-", input=NOTEBOOK)
    k.kubectl("wait", "--for=jsonpath={.status.readyReplicas}=1", "notebook/lab", "--timeout=120s", timeout=150)
    nb = k.kjson("get", "notebook", "lab")
    assert nb["status"]["containerState"].get("running") and any(c["type"] == "Ready" and c["status"] == "True" for c in nb["status"]["conditions"])
    pod = k.kjson("get", "pod", "lab-0")
    assert pod["metadata"]["labels"]["statefulset"] == "lab" and pod["metadata"]["labels"]["notebook-name"] == "lab"
    # as Kubeflow's: the Notebook owns a one-replica StatefulSet, which owns the Pod
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet" and pod["metadata"]["ownerReferences"][0]["name"] == "lab"
    sts = k.kjson("get", "statefulset", "lab")
    assert sts["metadata"]["ownerReferences"][0]["kind"] == "Notebook" and sts["spec"]["replicas"] == 1
    assert sts["status"]["readyReplicas"] == 1
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["NB_PREFIX"] == "/notebook/default/lab"
    svc = k.kjson("get", "service", "lab")
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["selector"] == {"statefulset": "lab"}

    url = f"{k.url}/notebook/default/lab"
    with httpx.Client(timeout=30, headers=k.headers) as http:
        st = http.get(f"{url}/api/status")
        assert st.status_code == 200 and "started" in st.json(), st.text
        page = http.get(f"{url}/lab")  # the JupyterLab page itself, through the proxy; sets the _xsrf cookie
        assert page.status_code == 200 and "JupyterLab" in page.text
        assert http.get(f"{url}").status_code in (200, 302)
        xsrf = {"X-XSRFToken": http.cookies.get("_xsrf", "")}
        # a file written through the contents API lands in the workspace claim's directory
        put = http.put(f"{url}/api/contents/hello.txt", json={"type": "file", "format": "text", "content": "from the notebook"}, headers=xsrf)
        assert put.status_code in (200, 201), put.text
        claim_dir = k.home / "volumes" / "default" / "ws-lab"
        assert (claim_dir / "hello.txt").read_text() == "from the notebook"
        kernel = http.post(f"{url}/api/kernels", json={"name": "python3"}, headers=xsrf)
        assert kernel.status_code == 201, kernel.text
        out = run_code(url, kernel.json()["id"], "import os\nprint(6 * 7, os.path.exists('hello.txt'))", dict(http.cookies), k.headers)
        assert out.strip() == "42 True"
        assert http.get(f"{k.url}/notebook/default/nope/api/status").status_code == 503
    # a second client with cookies of its own creates a kernel too (the proxy keeps no shared cookie jar)
    with httpx.Client(timeout=30, headers=k.headers) as other:
        other.get(f"{url}/lab")
        r = other.post(f"{url}/api/kernels", json={"name": "python3"}, headers={"X-XSRFToken": other.cookies.get("_xsrf", "")})
        assert r.status_code == 201, r.text
    # the notebook's server has a token of its own: its port refuses anyone without it (another local
    # user, a page in the browser), and there is no allow_origin=*
    port = int(k.kjson("get", "pod", "lab-0")["metadata"]["annotations"]["notebooks.kubeflow.org/port"])
    direct = httpx.get(f"http://127.0.0.1:{port}/notebook/default/lab/api/kernels", timeout=30)
    assert direct.status_code == 403, direct.text  # no token
    foreign = httpx.get(f"http://127.0.0.1:{port}/notebook/default/lab/api/kernels", headers={"Origin": "http://evil.example"}, timeout=30)
    assert foreign.status_code in (403, 404) and "access-control-allow-origin" not in foreign.headers  # Jupyter blocks the origin
    cmd = " ".join(k.kjson("get", "pod", "lab-0")["spec"]["containers"][0].get("command") or [])
    assert "allow_origin" not in cmd
    # ketch's own door: no credential, no notebook
    assert httpx.get(f"{url}/api/kernels", timeout=30).status_code == 401


def test_stop_and_start_with_kubeflows_annotation(k):
    wait_for(lambda: ready(k) == 1, timeout=120, what="lab ready")
    k.kubectl("annotate", "notebook", "lab", "kubeflow-resource-stopped=2026-11-23T00:00:00Z")
    wait_for(lambda: ready(k) == 0 and k.kubectl("get", "pod", "lab-0", check=False).returncode != 0, timeout=60, what="lab stopped")
    assert httpx.get(f"{k.url}/notebook/default/lab/api/status", headers=k.headers).status_code == 503
    k.kubectl("annotate", "notebook", "lab", "kubeflow-resource-stopped-")
    wait_for(lambda: ready(k) == 1, timeout=120, what="lab started again")
    assert httpx.get(f"{k.url}/notebook/default/lab/api/status", timeout=30, headers=k.headers).status_code == 200
    # deleting the Notebook takes its Pod and Service with it; the workspace claim stays
    k.kubectl("delete", "notebook", "lab", "--wait=true", timeout=90)
    wait_for(lambda: k.kubectl("get", "pod", "lab-0", check=False).returncode != 0 and k.kubectl("get", "svc", "lab", check=False).returncode != 0,
             timeout=60, what="pod and service collected")
    assert k.kjson("get", "pvc", "ws-lab")["metadata"]["name"] == "ws-lab"


def test_bad_notebook_is_refused_naming_the_field(k):
    r = k.kubectl("apply", "-f", "-", check=False, input="apiVersion: kubeflow.org/v1\nkind: Notebook\nmetadata: {name: empty}\nspec: {template: {spec: {containers: []}}}\n")
    assert r.returncode != 0 and "spec.template.spec.containers" in r.stderr


def test_dashboard_lists_notebooks_with_a_connect_link(ketch, dashboard):
    from playwright.sync_api import expect

    (ketch.home / "images.yaml").write_text(f"images:\n  - match: '*jupyter*'\n    venv: {VENV}\n")
    ketch.kubectl("apply", "-f", "-", input=NOTEBOOK)
    ketch.kubectl("wait", "--for=jsonpath={.status.readyReplicas}=1", "notebook/lab", "--timeout=120s", timeout=150)
    page = dashboard.open("/notebooks")
    row = page.locator("table#notebooks tbody tr", has_text="lab")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text("Running")  # readyReplicas 1, not stopped
    link = row.locator("a.nb-connect")
    assert link.get_attribute("href") == "/notebook/default/lab/lab"
    shots = dashboard.shot("notebooks").parent
    # Connect opens JupyterLab itself, served through ketch's proxy; a new notebook's kernel runs a cell
    with page.context.expect_page() as opened:
        link.click()
    lab = opened.value
    lab.on("pageerror", lambda e: dashboard.errors.append(str(e)))
    lab.locator(".jp-LauncherCard[title*='Python 3']").first.click(timeout=60000)
    lab.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60000)
    # the kernel started through the proxied WebSocket reports itself idle in the status bar
    expect(lab.get_by_text(re.compile(r"Python 3 \(ipykernel\) \| Idle"))).to_be_visible(timeout=60000)
    lab.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
    lab.keyboard.type("print(6 * 7)")
    lab.keyboard.press("Shift+Enter")
    expect(lab.locator(".jp-OutputArea-output", has_text="42")).to_be_visible(timeout=60000)
    lab.screenshot(path=str(shots / "jupyterlab.png"))


def test_v1beta1_notebook_with_its_own_command_keeps_its_port(k):
    """A v1beta1 Notebook (what older Kubeflow web apps create) whose container brings its own command: the
    controller keeps the declared containerPort, and the proxy reaches whatever server listens there."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    k.kubectl("apply", "-f", "-", input=textwrap.dedent(f"""
        apiVersion: kubeflow.org/v1beta1
        kind: Notebook
        metadata: {{name: web, namespace: default}}
        spec:
          template:
            spec:
              containers:
              - name: web
                image: python:3.11
                command: {json.dumps([sys.executable, "-c", f"import http.server as h; h.ThreadingHTTPServer(('127.0.0.1', {port}), h.SimpleHTTPRequestHandler).serve_forever()"])}
                ports: [{{containerPort: {port}, name: notebook-port}}]
        """))
    k.kubectl("wait", "--for=jsonpath={.status.readyReplicas}=1", "notebook.v1beta1.kubeflow.org/web", "--timeout=60s", timeout=70)
    nb = k.kjson("get", "notebooks.v1beta1.kubeflow.org", "web")
    assert nb["apiVersion"] == "kubeflow.org/v1beta1"
    assert k.kjson("get", "service", "web")["spec"]["ports"][0]["targetPort"] == port
    r = httpx.get(f"{k.url}/notebook/default/web/", timeout=30, headers=k.headers)
    assert "SimpleHTTP" in r.headers.get("server", ""), r.headers  # the notebook's own server answered
    k.kubectl("delete", "notebook", "web")


def test_idle_notebooks_are_culled_as_kubeflows_culler_does(tmp_path):
    kt = make_ketch(tmp_path, env={"ENABLE_CULLING": "true", "CULL_IDLE_TIME": "0.1", "IDLENESS_CHECK_PERIOD": "0.02"})
    (kt.home / "images.yaml").write_text(f"images:\n  - match: '*jupyter*'\n    venv: {VENV}\n")
    kt.start()
    try:
        kt.kubectl("apply", "-f", "-", input=NOTEBOOK.replace("name: lab", "name: idle").replace("name: ws-lab", "name: ws-idle").replace("claimName: ws-lab", "claimName: ws-idle"))
        kt.kubectl("wait", "--for=jsonpath={.status.readyReplicas}=1", "notebook/idle", "--timeout=120s", timeout=150)

        def culled():
            ann = kt.kjson("get", "notebook", "idle")["metadata"].get("annotations") or {}
            return "kubeflow-resource-stopped" in ann and ann

        ann = wait_for(culled, timeout=60, what="the idle notebook stopped by the culler")
        assert ann["notebooks.kubeflow.org/last-activity"].endswith("Z")
        wait_for(lambda: kt.kubectl("get", "pod", "idle-0", check=False).returncode != 0 and ready_of(kt, "idle") == 0, timeout=60, what="pod gone")
        assert "Culled" in kt.kubectl("get", "events", "--field-selector", "involvedObject.name=idle").stdout
    finally:
        kt.stop()


def ready_of(k, name: str) -> int:
    return (k.kjson("get", "notebook", name).get("status") or {}).get("readyReplicas", 0)
