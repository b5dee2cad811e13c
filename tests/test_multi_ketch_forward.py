"""Two `ketch up` on one PostgreSQL: the follower answers the data plane by forwarding to the leader
(server/forward.py, docs/apiserver.md "Several ketch processes on one PostgreSQL").

Real processes, real kubectl through the follower's kubeconfig: an InferenceService's predict through the
follower's gateway (both URL forms), `kubectl exec` (with stdin and an exit code), `kubectl attach -i`, `kubectl logs -f`,
`kubectl port-forward` (SPDY over WebSocket), `kubectl top`; each counted as forwarded by the follower, so they did go
through the leader. Forged, absent or unauthorized credentials are refused by the follower and never
forwarded, and the follower sends nothing to an address in the Lease that does not present ketch's own
certificate. After kill -9 of the leader the former follower takes the Lease and serves them itself.
"""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
import time

import httpx
import pytest
import websockets.sync.client as wsclient
from websockets.exceptions import InvalidStatus

from conftest import free_port, kubectl_bin, run_async, wait_for
from serving_helpers import IRIS_ROW, train_sklearn
from test_multi_ketch import cluster, holder, metric  # noqa: F401 - the two-process fixture, this module's own instance

FORWARDED = "ketch_leader_forwarded_requests_total"
NS = "fw"
ISVC = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "iris", "namespace": NS},
        "spec": {"predictor": {"sklearn": {"storageUri": ""}}}}


def forwarded(k) -> float:
    return sum(metric(k, FORWARDED).values())


def refused(k) -> float:
    """The leader's API requests answered 401 or 403."""
    return sum(v for labels, v in metric(k, "apiserver_request_total").items() if 'code="401"' in labels or 'code="403"' in labels)


def predict(k, host_form: bool = False, headers: dict | None = None) -> httpx.Response:
    h = dict(k.headers if headers is None else headers)
    if host_form:
        return httpx.post(f"{k.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, headers={**h, "Host": f"iris.{NS}.localhost"}, timeout=30)
    return httpx.post(f"{k.url}/serving/{NS}/iris/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, headers=h, timeout=30)


def pod(name: str, code: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
                       "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "python", "command": ["python", "-c", code]}]}})


@pytest.fixture(scope="module")
def served(cluster, tmp_path_factory):  # noqa: F811
    a, b = cluster
    d = tmp_path_factory.mktemp("model") / "lr"
    model = train_sklearn(d)
    b.kubectl("create", "namespace", NS)
    isvc = json.loads(json.dumps(ISVC))
    isvc["spec"]["predictor"]["sklearn"]["storageUri"] = str(d)
    b.kubectl("apply", "-f", "-", input=json.dumps(isvc))
    b.kubectl("apply", "-f", "-", input=pod("sleeper", "import time; time.sleep(600)"))
    b.kubectl("wait", "--for=condition=Ready", "inferenceservice/iris", "-n", NS, "--timeout=90s")
    b.kubectl("wait", "--for=condition=Ready", "pod/sleeper", "-n", NS, "--timeout=60s")
    return a, b, model


def test_the_follower_forwards_predict_exec_logs_and_port_forward_to_the_leader(served):
    a, b, model = served
    assert holder(b).endswith(f"_{a.port}"), "a leads"
    lease = b.kjson("get", "lease", "ketch-controller-manager", "-n", "kube-system")
    assert lease["metadata"]["annotations"]["ketch.dev/leader-url"] == f"https://127.0.0.1:{a.port}"
    assert set(lease["spec"]) <= {"holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions"}
    before = forwarded(b)

    # The gateway, both URL forms: answered by the leader's model server replica.
    want = model.predict([IRIS_ROW]).tolist()
    for host_form in (False, True):
        r = predict(b, host_form)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": want} and r.headers["x-ketch-revision"] == "iris-predictor-00001"
    assert forwarded(b) >= before + 2

    # kubectl exec through the follower: output, stdin, and the command's exit code.
    n = forwarded(b)
    assert b.kubectl("exec", "-n", NS, "sleeper", "--", "python", "-c", "print('hi from the leader')").stdout == "hi from the leader\n"
    assert b.kubectl("exec", "-i", "-n", NS, "sleeper", "--", "python", "-c", "import sys; print(sys.stdin.read().upper())",
                     input="hello").stdout == "HELLO\n"
    r = b.kubectl("exec", "-n", NS, "sleeper", "--", "python", "-c", "raise SystemExit(3)", check=False)
    assert r.returncode == 3, r.stderr
    assert forwarded(b) >= n + 3

    # kubectl attach -i through the follower: the leader's kubelet holds the container's stdin.
    reader = json.loads(pod("reader", "print('got', input().upper(), flush=True)"))
    reader["spec"]["containers"][0]["stdin"] = True
    b.kubectl("apply", "-f", "-", input=json.dumps(reader))
    wait_for(lambda: (b.kjson("get", "pod", "reader", "-n", NS).get("status") or {}).get("phase") == "Running", timeout=30, what="reader running")
    n = forwarded(b)
    assert "got HELLO" in b.kubectl("attach", "-i", "-n", NS, "reader", input="hello\n", timeout=30).stdout
    assert forwarded(b) > n

    # kubectl top through the follower: the leader's kubelet samples the Pods (metrics.k8s.io).
    n = forwarded(b)
    top = wait_for(lambda: (r := b.kubectl("top", "pod", "sleeper", "-n", NS, "--no-headers", check=False)).returncode == 0 and r.stdout,
                   timeout=20, interval=0.5, what="kubectl top through the follower")
    assert top.split()[0] == "sleeper" and top.split()[2].endswith("Mi")
    assert forwarded(b) > n

    # kubectl logs -f through the follower: streamed while the container runs, ends when it exits.
    b.kubectl("apply", "-f", "-", input=pod("talker", "import time\nfor i in range(6):\n    print('line', i, flush=True); time.sleep(0.4)"))
    wait_for(lambda: (b.kjson("get", "pod", "talker", "-n", NS).get("status") or {}).get("phase") == "Running", timeout=30, what="talker running")
    n = forwarded(b)
    out = b.kubectl("logs", "-f", "-n", NS, "talker", timeout=30).stdout
    assert out.splitlines() == [f"line {i}" for i in range(6)]
    assert forwarded(b) >= n + 1

    # kubectl port-forward through the follower (SPDY/3.1 tunnelled over the WebSocket) to the model server.
    pred = b.kjson("get", "pods", "-n", NS, "-l", "serving.kserve.io/inferenceservice=iris")["items"][0]
    port = pred["spec"]["containers"][0]["ports"][0]["containerPort"]
    local = free_port()
    pf = subprocess.Popen([kubectl_bin(), "--kubeconfig", str(b.kubeconfig), "port-forward", "-n", NS, f"pod/{pred['metadata']['name']}",
                           f"{local}:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = pf.stdout.readline()
        assert "Forwarding from" in line, pf.stderr.read() if pf.poll() is not None else line
        r = wait_for(lambda: _try(f"http://127.0.0.1:{local}/v2/health/ready"), timeout=20, what="port-forward answers")
        assert r.status_code == 200
    finally:
        pf.kill()
        pf.wait(5)


def _try(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def test_forged_absent_or_unauthorized_credentials_are_refused_by_the_follower_and_never_forwarded(served):
    a, b, _ = served
    b.kubectl("create", "serviceaccount", "nobody", "-n", NS)
    nobody = b.kubectl("create", "token", "nobody", "-n", NS).stdout.strip()  # valid, but granted nothing
    time.sleep(0.5)
    sent, leader_refused = forwarded(b), refused(a)
    exec_path = f"/api/v1/namespaces/{NS}/pods/sleeper/exec?command=true&stdout=true"
    for who, headers in (("forged", {"Authorization": "Bearer forged-token"}), ("absent", {}), ("nobody", {"Authorization": f"Bearer {nobody}"})):
        want = 403 if who == "nobody" else 401
        for host_form in (False, True):
            r = predict(b, host_form, headers=headers)
            assert r.status_code == want, (who, host_form, r.status_code, r.text)
        r = httpx.get(f"{b.url}/api/v1/namespaces/{NS}/pods/sleeper/log", headers=headers, timeout=10)
        assert r.status_code == want, (who, r.text)
        with pytest.raises(InvalidStatus) as e:
            wsclient.connect(f"ws://127.0.0.1:{b.port}{exec_path}", additional_headers=headers, subprotocols=["v5.channel.k8s.io"],  # type: ignore[list-item]
                             open_timeout=10).close()
        assert e.value.response.status_code == want, who
    # The bearer WebSocket subprotocol (how kubectl-like clients pass a token where headers cannot be set), forged.
    with pytest.raises(InvalidStatus) as e:
        wsclient.connect(f"ws://127.0.0.1:{b.port}{exec_path}", subprotocols=["v5.channel.k8s.io", "base64url.bearer.authorization.k8s.io.Zm9yZ2Vk"],  # type: ignore[list-item]
                         open_timeout=10).close()
    assert e.value.response.status_code == 401
    assert forwarded(b) == sent, "a refused request was forwarded"
    assert refused(a) == leader_refused, "the leader saw a request the follower should have refused"

    # A client claiming its request was already forwarded is not forwarded again, and gains nothing.
    r = httpx.get(f"{b.url}/api/v1/namespaces/{NS}/pods/sleeper/log", headers={**b.headers, "X-Ketch-Forwarded-By": "x"}, timeout=10)
    assert r.status_code == 200  # a log is served from the shared home instead
    r = predict(b, headers={**b.headers, "X-Ketch-Forwarded-By": "x"})
    assert r.status_code == 503 and "forwarded" in r.json()["message"]
    assert forwarded(b) == sent


def test_after_kill9_of_the_leader_the_former_follower_serves_directly(served):
    a, b, model = served
    a.kill9()
    wait_for(lambda: holder(b).endswith(f"_{b.port}"), timeout=20, what="b holds the Lease")
    lease = b.kjson("get", "lease", "ketch-controller-manager", "-n", "kube-system")
    assert lease["metadata"]["annotations"]["ketch.dev/leader-url"] == f"https://127.0.0.1:{b.port}"
    # Its controllers rebuild the routing table and its kubelet adopts the running replica.
    wait_for(lambda: predict(b).status_code == 200, timeout=30, what="predict on the new leader")
    n = forwarded(b)
    assert predict(b).json() == {"predictions": model.predict([IRIS_ROW]).tolist()}
    assert predict(b, host_form=True).status_code == 200
    assert b.kubectl("exec", "-n", NS, "sleeper", "--", "python", "-c", "print('adopted')").stdout == "adopted\n"
    assert forwarded(b) == n, "the leader serves itself"


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a) -> None:
        pass


class _Election:
    """What the forwarder reads of runtime/leader.py's elector: not leading, and where the Lease says the
    leader is (here: whatever the test put there, as anyone allowed to write that Lease could)."""

    def __init__(self, url: str) -> None:
        self.leading, self._url = False, url
        self.cfg = type("Cfg", (), {"identity": "follower_1"})()

    def leader_url(self) -> str:
        return self._url


def test_the_follower_sends_credentials_only_to_a_leader_with_ketchs_certificate(tmp_path):
    """An address in the Lease that does not present ketch's own certificate gets no request, so it
    collects no credential; the same server, once its certificate is ketch's, gets the request."""
    from ketch.server.forward import LeaderForwarder
    from ketch.server.tls import self_signed

    ketch_cert, _ = self_signed(tmp_path / "ketch", "127.0.0.1")
    other_cert, other_key = self_signed(tmp_path / "impostor", "127.0.0.1")  # also names 127.0.0.1, but another key
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(other_cert, other_key)
    srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{srv.server_address[1]}"

    async def local(scope, receive, send) -> None:  # noqa: ANN001 - what this process would answer itself
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def call(trusted) -> httpx.Response:  # noqa: ANN001
        fw = LeaderForwarder(local, _Election(url), [(lambda scope: True, False)], trusted)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fw), base_url="http://127.0.0.1") as c:
                return await c.get(f"/serving/{NS}/iris/v1/models/iris", headers={"Authorization": "Bearer secret-of-the-caller"})
        finally:
            await fw.close()

    try:
        r = run_async(lambda: call(ketch_cert))  # a loop of its own: conftest.py says why
        assert r.status_code == 503 and "did not answer" in r.json()["message"], r.text
        assert _Recorder.seen == [], "a request reached a server without ketch's certificate"
        r = run_async(lambda: call(other_cert))  # the control: trusted, the very same server gets it, credential and all
        assert r.status_code == 200 and r.text == "ok"
        assert [h.get("authorization") for h in _Recorder.seen] == ["Bearer secret-of-the-caller"]
        assert _Recorder.seen[0].get("x-ketch-forwarded-by") == "follower_1"
    finally:
        srv.shutdown()
