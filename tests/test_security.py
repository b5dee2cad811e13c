"""Each attack the issue lists, tried against a real ketch: refused, and the command never run. Then the same
actions through the real clients with credentials."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from conftest import SRC, make_ketch, wait_for

FOREIGN = "http://evil.example"


def pod_touching(name: str, marker: Path) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "python:3.11", "command": [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]}]}}


def session_cookie(k) -> str:
    """Log in as the dashboard does and return the session cookie's value."""
    with httpx.Client(base_url=k.url, follow_redirects=False) as h:
        r = h.post("/login", data={"token": k.token}, headers={"Origin": k.url})
        assert r.status_code == 303, r.text
        return r.cookies["ketch_session"]


@pytest.fixture(scope="module")
def k(shared_ketch):
    return shared_ketch


def test_every_route_needs_a_credential(k):
    """Only the health checks (and the login page) answer without one; the Kubernetes API answers with a
    Kubernetes Status."""
    with k.http(auth=False) as h:
        for path in ("/healthz", "/livez", "/readyz"):
            assert h.get(path).status_code == 200, path
        for method, path in [("GET", "/api/v1/namespaces/default/pods"), ("GET", "/api"), ("GET", "/version"),
                             ("GET", "/openapi/v2"), ("GET", "/api/v1/namespaces/default/pods?watch=true"),
                             ("GET", "/api/v1/namespaces/default/pods/x/log"), ("GET", "/apis/v2beta1/runs"),
                             ("GET", "/api/model_registry/v1/registered_models"), ("GET", "/ui/artifacts/r/a"),
                             ("GET", "/notebook/default/nb/api/kernels"), ("POST", "/katib/v1/namespaces/default/trials/t/metrics"),
                             ("POST", "/serving/default/m/v1/models/m:predict"), ("GET", "/ui/js/app.js")]:
            r = h.request(method, path)
            assert r.status_code == 401, (path, r.status_code, r.text)
            assert "access-control-allow-origin" not in r.headers
        st = h.get("/api/v1/namespaces").json()
        assert st["kind"] == "Status" and st["reason"] == "Unauthorized" and st["code"] == 401
        assert h.get("/api", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
        # a browser opening the dashboard unauthenticated is sent to the login page
        r = h.get("/", headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == "/login"


def test_cross_site_pod_creation_never_runs(k, tmp_path):
    """What a foreign page can send — text/plain (no-cors fetch, a form), form-encoded, multipart, Origin:
    null — with or without the user's session cookie: refused, and the pod's command never runs."""
    marker = tmp_path / "ran"
    body = json.dumps(pod_touching("xsite", marker))
    cookie = {"Cookie": f"ketch_session={session_cookie(k)}"}
    path = "/api/v1/namespaces/default/pods"
    with k.http(auth=False) as h:
        for headers in ({"Content-Type": "text/plain", "Origin": FOREIGN}, {"Content-Type": "text/plain", "Origin": "null"},
                        {"Content-Type": "application/x-www-form-urlencoded", "Origin": FOREIGN}):
            assert h.post(path, content=body, headers=headers).status_code == 401
            r = h.post(path, content=body, headers={**headers, **cookie})
            assert r.status_code == 403 and "cross-origin" in r.json()["message"], r.text
        r = h.post(path, files={"f": ("p.json", body, "application/json")}, headers={"Origin": FOREIGN, **cookie})
        assert r.status_code == 403
        # a cookie alone, with no Origin at all on a write: refused too (a browser always sends one)
        assert h.post(path, content=body, headers={"Content-Type": "application/json", **cookie}).status_code == 403
    # even with the real token, a body that is not JSON/YAML is not an object (as on kube-apiserver)
    with k.http() as h:
        r = h.post(path, content=body, headers={"Content-Type": "text/plain"})
        assert r.status_code == 415, r.text
    time.sleep(1.5)
    assert not marker.exists()
    assert k.kubectl("get", "pod", "xsite", check=False).returncode != 0
    # the dashboard's own page (same Origin, with its cookie) may create it
    with k.http(auth=False) as h:
        r = h.post(path, content=body, headers={"Content-Type": "application/json", "Origin": k.url, **cookie})
        assert r.status_code == 201, r.text
    wait_for(marker.exists, timeout=30, what="the same-origin pod ran")


def test_pipeline_upload_from_a_form_never_compiles(k, tmp_path):
    marker = tmp_path / "compiled"
    src = f"open({str(marker)!r}, 'w').write('top-level code ran')\n"
    cookie = {"Cookie": f"ketch_session={session_cookie(k)}"}
    with k.http(auth=False) as h:
        for extra in ({}, cookie):
            r = h.post("/apis/v2beta1/pipelines/upload", params={"name": "evil"}, headers={"Origin": FOREIGN, **extra},
                       files={"uploadfile": ("evil.py", src.encode(), "text/x-python")})
            assert r.status_code in (401, 403), r.text
    time.sleep(1)
    assert not marker.exists()


def test_exec_websocket_from_a_foreign_origin_is_refused(k):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"},
              "spec": {"containers": [{"name": "c", "image": "python:3.11", "command": [sys.executable, "-c", "import time; time.sleep(300)"]}]}}))
    k.kubectl("wait", "--for=condition=Ready", "pod/shell", "--timeout=60s", timeout=70)
    url = k.url.replace("http", "ws") + "/api/v1/namespaces/default/pods/shell/exec?command=id&stdout=true"
    cookie = f"ketch_session={session_cookie(k)}"
    for headers in ({"Cookie": cookie}, {"Authorization": f"Bearer {k.token}"}):
        with pytest.raises(InvalidStatus) as e:
            connect(url, origin=FOREIGN, additional_headers=headers, subprotocols=["v5.channel.k8s.io"], open_timeout=10)  # type: ignore[arg-type]
        assert e.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as e:  # no credential at all
        connect(url, subprotocols=["v5.channel.k8s.io"], open_timeout=10)  # type: ignore[list-item]
    assert e.value.response.status_code == 401
    # the same socket from ketch's own origin with the session cookie, and kubectl with its token, work
    with connect(url, origin=k.url, additional_headers={"Cookie": cookie}, subprotocols=["v5.channel.k8s.io"], open_timeout=10) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "v5.channel.k8s.io"
    assert k.kubectl("exec", "shell", "--", "echo", "hi").stdout.strip() == "hi"


def test_dns_rebinding_host_is_refused_everywhere(k):
    with k.http() as h:
        for path in ("/api/v1/namespaces/default/secrets", "/", "/apis/v2beta1/runs", "/serving/default/m/v1/models/m:predict", "/healthz"):
            r = h.get(path, headers={"Host": f"evil.example:{k.port}"})
            assert r.status_code == 403 and "DNS rebinding" in r.text, (path, r.text)
        # loopback names, the gateway's *.localhost names and IP literals are served
        for host in ("localhost", "127.0.0.1", "[::1]"):
            assert h.get("/api", headers={"Host": f"{host}:{k.port}"}).status_code == 200, host
        r = h.get("/v1/models/demo", headers={"Host": f"demo.default.localhost:{k.port}"})
        assert r.status_code != 403 and "DNS rebinding" not in r.text  # reaches the gateway (no such model here)


def test_artifact_route_reads_only_under_the_artifact_root(k):
    """A PipelineRun whose status names file:///etc/passwd (or a path climbing out of the root) is not a
    way to read the host's files through the dashboard."""
    k.kubectl("create", "namespace", "arts")
    run = {"apiVersion": "pipelines.kubeflow.org/v1", "kind": "PipelineRun", "metadata": {"name": "stolen", "namespace": "arts"},
           "spec": {"pipelineSpec": {"pipelineInfo": {"name": "p"}, "root": {"dag": {"tasks": {}}}}, "suspend": True}}
    with k.http() as h:
        r = h.post("/apis/pipelines.kubeflow.org/v1/namespaces/arts/pipelineruns", json=run)
        assert r.status_code == 201, r.text
        root = k.home / "pipelines" / "artifacts"
        inside = root / "ok" / "data.txt"
        inside.parent.mkdir(parents=True, exist_ok=True)
        inside.write_text("inside the root")
        arts = {"a1": "file:///etc/passwd", "a2": f"{root}/../../tokens.csv", "a3": str(inside)}
        status = {"status": {"tasks": {"t": {"outputs": {"artifacts": {n: [{"id": n, "uri": u}] for n, u in arts.items()}}}}}}
        r = h.patch("/apis/pipelines.kubeflow.org/v1/namespaces/arts/pipelineruns/stolen/status", json=status,
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
        for aid in ("a1", "a2"):
            r = h.get(f"/ui/artifacts/stolen/{aid}")
            assert r.status_code == 403 and "root" not in r.text.split("outside")[0], r.text
        r = h.get("/ui/artifacts/stolen/a3")
        assert r.status_code == 200 and r.text == "inside the root"


def test_files_are_private(k):
    home = k.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for name in ("ketch.db", "tokens.csv", "sa.key", "tls/tls.key"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, name
    k.kubectl("create", "secret", "generic", "s1", "--from-literal=pw=hunter2")
    k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "withsecret"},
              "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "python:3.11",
                       "command": [sys.executable, "-c", "print(open('/etc/s/pw').read())"], "volumeMounts": [{"name": "s", "mountPath": "/etc/s"}]}],
                       "volumes": [{"name": "s", "secret": {"secretName": "s1"}}]}}))
    wait_for(lambda: k.kubectl("get", "pod", "withsecret", "-o", "jsonpath={.status.phase}").stdout == "Succeeded", timeout=60)
    assert k.kubectl("logs", "withsecret").stdout.strip() == "hunter2"
    token_files = list((home / "kubelet" / "pods").glob("*/volumes/kube-api-access-*/token"))
    assert token_files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in token_files)


IN_POD = textwrap.dedent("""
    import json, sys
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    config.load_config()
    v1 = client.CoreV1Api()
    mine = [p.metadata.name for p in v1.list_namespaced_pod("team").items]
    try:
        v1.list_namespaced_secret("default")
        other = "allowed"
    except ApiException as e:
        other = e.status
    print(json.dumps({"mine": mine, "other": other, "ns": open(sys.argv[1]).read()}))
""")


def test_pods_get_their_service_account_not_the_admin_key(k, tmp_path):
    """The kubernetes client inside a Pod reaches ketch as the Pod's ServiceAccount (its token mounted where
    Kubernetes mounts it), bound to the Pod's namespace; the token dies with the Pod."""
    k.kubectl("create", "namespace", "team")
    script = tmp_path / "inpod.py"
    script.write_text(IN_POD)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "team"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "python:3.11", "command": [
               sys.executable, str(script), "/var/run/secrets/kubernetes.io/serviceaccount/namespace"]}]}}
    k.kubectl("apply", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: k.kubectl("get", "pod", "client", "-n", "team", "-o", "jsonpath={.status.phase}").stdout in ("Succeeded", "Failed"), timeout=90)
    logs = k.kubectl("logs", "client", "-n", "team").stdout
    out = json.loads(logs.strip().splitlines()[-1])
    assert out == {"mine": ["client"], "other": 403, "ns": "team"}, logs
    spec = k.kjson("get", "pod", "client", "-n", "team")["spec"]
    assert spec["serviceAccountName"] == "default"
    vol = next(v for v in spec["volumes"] if v["name"].startswith("kube-api-access-"))
    assert vol["projected"]["sources"][0]["serviceAccountToken"]["path"] == "token"
    token = next((k.home / "kubelet" / "pods").glob(f"{k.kjson('get', 'pod', 'client', '-n', 'team')['metadata']['uid']}/volumes/kube-api-access-*/token")).read_text()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == "system:serviceaccount:team:default" and claims["kubernetes.io"]["pod"]["name"] == "client"
    assert claims["sub"] != "admin"
    with k.http(auth=False) as h:
        auth = {"Authorization": f"Bearer {token}"}
        assert h.get("/api/v1/namespaces/team/pods", headers=auth).status_code == 200
        assert h.get("/api/v1/namespaces/default/pods", headers=auth).status_code == 403
        assert h.get("/api/v1/pods", headers=auth).status_code == 403
        k.kubectl("delete", "pod", "client", "-n", "team", "--wait=true")
        time.sleep(5.5)  # the verified-token cache lives 5 s
        assert h.get("/api/v1/namespaces/team/pods", headers=auth).status_code == 401
    # a Pod may opt out of the token, as on Kubernetes
    k.kubectl("apply", "-f", "-", input=json.dumps({**pod, "metadata": {"name": "notoken", "namespace": "team"},
                                                    "spec": {**pod["spec"], "automountServiceAccountToken": False}}))
    spec = k.kjson("get", "pod", "notoken", "-n", "team")["spec"]
    assert not any(v["name"].startswith("kube-api-access-") for v in spec.get("volumes") or [])


def test_token_request_and_kubectl_create_token(k):
    k.kubectl("create", "namespace", "tr")
    k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot", "namespace": "tr"}}))
    # RBAC: an account gets what its bindings give (docs/multiuser.md); this one may read its namespace
    k.kubectl("create", "rolebinding", "robot-view", "--clusterrole=view", "--serviceaccount=tr:robot", "-n", "tr")
    token = k.kubectl("create", "token", "robot", "-n", "tr", "--duration=1h").stdout.strip()
    with k.http(auth=False) as h:
        auth = {"Authorization": f"Bearer {token}"}
        assert h.get("/api/v1/namespaces/tr/configmaps", headers=auth).status_code == 200
        assert h.get("/api/v1/namespaces/default/configmaps", headers=auth).status_code == 403
    r = k.kubectl("create", "token", "robot", "-n", "tr", "--duration=1m", check=False)
    assert r.returncode != 0 and "less than 10 minutes" in r.stderr
    r = k.kubectl("create", "token", "nobody", "-n", "tr", check=False)
    assert r.returncode != 0 and "not found" in r.stderr
    # the account deleted: its tokens stop working
    k.kubectl("delete", "serviceaccount", "robot", "-n", "tr")
    time.sleep(5.5)
    with k.http(auth=False) as h:
        assert h.get("/api/v1/namespaces/tr/configmaps", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_kfp_client_needs_the_token(k):
    import kfp

    with pytest.raises(Exception) as e:  # kfp.Client's first call (healthz) is refused: it gives up
        kfp.Client(host=k.url).list_experiments()
    assert "healthz" in str(e.value) or "401" in str(e.value)
    assert k.kfp_client().list_experiments() is not None


def test_login_page_one_time_link_and_session(chromium, tmp_path):
    """The dashboard in Chromium: sent to the login page, a wrong token refused, the right one lets it in;
    the link ``ketch up`` prints logs in once."""
    k = make_ketch(tmp_path).start()
    try:
        ctx = chromium.new_context()
        page = ctx.new_page()
        page.goto(k.url + "/")
        assert page.url == k.url + "/login"
        page.fill("#token", "wrong")
        page.click("button[type=submit]")
        assert "not valid" in page.locator(".err").inner_text()
        page.fill("#token", k.token)
        page.click("button[type=submit]")
        page.wait_for_url(k.url + "/")
        page.wait_for_selector("#live")
        cookie = next(c for c in ctx.cookies() if c["name"] == "ketch_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        ctx.close()
        link = next(ln.split()[1] for ln in k.log().splitlines() if ln.startswith("dashboard: "))
        assert "/login?code=" in link
        ctx = chromium.new_context()
        page = ctx.new_page()
        page.goto(link)
        page.wait_for_url(k.url + "/")
        assert any(c["name"] == "ketch_session" for c in ctx.cookies())
        ctx.close()
        ctx = chromium.new_context()
        page = ctx.new_page()
        page.goto(link)  # a second use of the same link
        assert "already used" in page.content()
        ctx.close()
    finally:
        k.stop()


def test_exposed_beyond_loopback_requires_tls(tmp_path):
    """--host 0.0.0.0: the banner names the real exposure and the certificate's fingerprint; kubectl reaches
    it over TLS with the certificate from its kubeconfig; --insecure warns loudly."""
    k = make_ketch(tmp_path, extra_args=["--host", "0.0.0.0"]).start()
    try:
        log = k.log()
        assert "to the network" in log and "SHA-256" in log, log
        assert k.kubectl("get", "ns", "default", "-o", "name").stdout.strip() == "namespace/default"
        cfg = k.kubeconfig.read_text()
        assert "https://127.0.0.1" in cfg and "certificate-authority-data" in cfg
    finally:
        k.stop()
    k2 = make_ketch(tmp_path / "b", extra_args=["--host", "0.0.0.0", "--insecure"]).start()
    try:
        assert "WARNING: --insecure" in k2.log()
    finally:
        k2.stop()


def test_plain_http_only_for_loopback_peers():
    import socket

    from ketch.server.listener import _loopback_peer  # the listener's rule, on real sockets

    srv = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    assert _loopback_peer(conn)
    for s in (c, conn, srv):
        s.close()


def test_cli_finds_server_and_token_from_the_kubeconfig(k):
    """No KETCH_* variables: `ketch get` reads the kubeconfig's current context (server and token)."""
    env = {kk: v for kk, v in os.environ.items() if not kk.startswith("KETCH_")}
    env.update(KUBECONFIG=str(k.kubeconfig), PYTHONPATH=str(SRC), HOME=str(k.home / "nohome"))
    r = subprocess.run([sys.executable, "-m", "ketch", "get", "namespaces"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "default" in r.stdout, r.stderr


def test_tritonclient_against_a_protected_inference_service(k, tmp_path):
    """tritonclient through the gateway: refused without the token, served with it."""
    import numpy as np
    import tritonclient.http as th
    from tritonclient.utils import InferenceServerException

    from serving_helpers import IRIS_ROW, train_sklearn
    from test_serving_isvc import isvc_yaml

    train_sklearn(tmp_path / "lr")
    k.kubectl("apply", "-f", "-", input=isvc_yaml("guarded", "default", str(tmp_path / "lr")))
    k.kubectl("wait", "--for=condition=Ready", "isvc/guarded", "--timeout=90s", timeout=100)
    c = th.InferenceServerClient(url=f"127.0.0.1:{k.port}/serving/default/guarded")
    x = th.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([IRIS_ROW], dtype=np.float32))
    with pytest.raises(InferenceServerException) as e:
        c.infer("guarded", [x])
    assert "401" in str(e.value) or "Unauthorized" in str(e.value)
    out = c.infer("guarded", [x], headers=k.headers)
    assert out.as_numpy(out.get_response()["outputs"][0]["name"]).tolist() == [1]
