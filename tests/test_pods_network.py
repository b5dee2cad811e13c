"""Pod networks (kubelet/network.py). On the host network (the default) the kubelet says so on each Pod
with an event instead of leaving it silent, and the limitation it names is real: two Pods listening on one
port collide. With ``KETCH_POD_NETWORK=netns`` (root) each Pod has a network namespace and address of its
own, Services a ClusterIP with a proxy and names in every Pod's /etc/hosts."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import free_port, kubectl_bin, make_ketch, wait_for

SERVE = "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); print('listening', flush=True); time.sleep(600)"


def pod(name: str, port: int, host_network: bool = False) -> str:
    spec = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "python", "command": ["python3", "-c", SERVE, str(port)]}]}
    if host_network:
        spec["hostNetwork"] = True
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})


def events(k, name: str) -> list[dict]:
    return k.kjson("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]


def test_shared_host_network_is_said_on_the_pod_and_is_real(tmp_path):
    k = make_ketch(tmp_path, env={"KETCH_POD_NETWORK": "host"}).start()
    try:
        _shared_host_network(k)
    finally:
        k.stop()


def _shared_host_network(k) -> None:
    port = free_port()
    k.kubectl("apply", "-f", "-", input=pod("first", port))
    wait_for(lambda: "listening" in k.kubectl("logs", "first").stdout, timeout=60, what="the first Pod to listen")
    ev = wait_for(lambda: [e for e in events(k, "first") if e["reason"] == "SharedHostNetwork"], timeout=30, what="the SharedHostNetwork event")
    assert ev[0]["type"] == "Normal" and ev[0]["source"]["component"] == "kubelet"
    assert "shares the host's network" in ev[0]["message"] and "Address already in use" in ev[0]["message"]
    assert "shares the host's network" in k.kubectl("describe", "pod", "first").stdout

    # what the event warns of: a second Pod on the same port fails to bind
    k.kubectl("apply", "-f", "-", input=pod("second", port))
    wait_for(lambda: (k.kjson("get", "pod", "second").get("status") or {}).get("phase") == "Failed", timeout=60, what="the second Pod to fail")
    assert "Address already in use" in k.kubectl("logs", "second").stdout

    # a Pod that asks for the host's network is told nothing
    k.kubectl("apply", "-f", "-", input=pod("asked", free_port(), host_network=True))
    wait_for(lambda: "listening" in k.kubectl("logs", "asked").stdout, timeout=60, what="the hostNetwork Pod to listen")
    assert [e["reason"] for e in events(k, "asked") if e["reason"] == "SharedHostNetwork"] == []


# -- a network namespace per Pod (KETCH_POD_NETWORK=netns, kubelet/network.py) -----------------------------

WEB = ("import http.server as h, socket, sys\n"
       "class S(h.BaseHTTPRequestHandler):\n"
       "    def do_GET(self):\n"
       "        b = (socket.gethostname() + ' ' + sys.argv[1]).encode(); self.send_response(200); self.end_headers(); self.wfile.write(b)\n"
       "    def log_message(self, *a): pass\n"
       "h.HTTPServer((sys.argv[2], 8080), S).serve_forever()\n")


def netns_unavailable() -> str | None:
    from ketch.kubelet.network import permitted

    return permitted()


needs_netns = pytest.mark.skipif(netns_unavailable() is not None, reason=f"network namespaces: {netns_unavailable()}")


def web_pod(name: str, ns: str = "default", bind: str = "0.0.0.0", labels: dict | None = None) -> dict:
    c = {"name": "c", "image": "python", "command": ["python3", "-c", WEB, name, bind], "ports": [{"containerPort": 8080}]}
    if bind != "127.0.0.1":
        c["readinessProbe"] = {"httpGet": {"port": 8080, "path": "/"}, "periodSeconds": 1}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": "web"}},
            "spec": {"containers": [c]}}


def apply_obj(k, obj: dict) -> None:
    k.kubectl("apply", "-f", "-", input=json.dumps(obj))


def ready(k, name: str, ns: str = "default") -> dict:
    def check():
        p = k.kjson("get", "pod", name, "-n", ns)
        return p if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or []) else None

    return wait_for(check, timeout=60, what=f"pod {ns}/{name} Ready")


@pytest.fixture
def netns_ketch(tmp_path):
    k = make_ketch(tmp_path, env={"KETCH_POD_NETWORK": "netns"}).start()
    try:
        yield k
    finally:
        k.stop()


@needs_netns
def test_each_pod_has_its_own_address_and_services_have_cluster_ips_and_names(netns_ketch):
    k = netns_ketch
    # two Pods listening on the same port: on Kubernetes each has its own IP, and so here
    apply_obj(k, web_pod("web-a"))
    b_pod = web_pod("web-b")  # an exec probe runs in the Pod's namespace: its 127.0.0.1 is the Pod's own
    b_pod["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": [
        "python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/', timeout=1)"]}, "periodSeconds": 1}
    apply_obj(k, b_pod)
    a, b = ready(k, "web-a"), ready(k, "web-b")
    ips = {a["status"]["podIP"], b["status"]["podIP"]}
    assert len(ips) == 2 and all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.244.0.0/16") for ip in ips)
    for p in (a, b):  # reached at its own address from the host (the httpGet readiness probe did the same)
        assert httpx.get(f"http://{p['status']['podIP']}:8080/", timeout=5).text.endswith(p["metadata"]["name"])
    assert [e for e in events(k, "web-a") if e["reason"] == "SharedHostNetwork"] == []

    # a Service gets a ClusterIP from the service range, forwarded to its ready endpoints
    k.kubectl("create", "service", "clusterip", "web", "--tcp=80:8080")
    k.kubectl("patch", "service", "web", "-p", json.dumps({"spec": {"selector": {"app": "web"}}}))
    svc = k.kjson("get", "service", "web")
    assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in ipaddress.ip_network("10.96.0.0/16")
    wait_for(lambda: len((k.kjson("get", "endpoints", "web").get("subsets") or [{}])[0].get("addresses") or []) == 2, timeout=30, what="2 endpoints")

    # inside a Pod: Service names resolve (short in its namespace, svc.ns elsewhere), the ClusterIP answers,
    # its own hostname is its own address, and ketch's API is reached with the Pod's own credentials
    k.kubectl("create", "namespace", "other")
    probe = ("import socket, urllib.request as u, subprocess\n"
             "def get(url):\n"
             "    return u.urlopen(url, timeout=10).read().decode().split()[1]\n"
             "print('names', socket.gethostbyname('web.default.svc.cluster.local'), socket.gethostbyname('web.default'))\n"
             "print('via', sorted({get('http://web.default.svc.cluster.local/') for _ in range(8)}))\n"
             "print('self', socket.gethostbyname(__import__('os').environ['HOSTNAME']))\n"
             "try:\n"
             "    socket.gethostbyname('web'); print('short resolves')\n"
             "except OSError:\n"
             "    print('short does not resolve')\n"
             "print(subprocess.run(['kubectl', 'auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], capture_output=True, text=True).stdout)\n")
    apply_obj(k, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": "other"},
                  "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "python", "command": ["python3", "-c", probe]}]}})
    done = wait_for(lambda: (p := k.kjson("get", "pod", "client", "-n", "other"))["status"].get("phase") in ("Succeeded", "Failed") and p,
                    timeout=60, what="the client Pod to finish")
    out = k.kubectl("logs", "client", "-n", "other").stdout
    assert done["status"]["phase"] == "Succeeded", out
    cip = svc["spec"]["clusterIP"]
    assert f"names {cip} {cip}" in out
    assert "via ['web-a', 'web-b']" in out  # round robin over both endpoints through the ClusterIP
    assert f"self {done['status']['podIP']}" in out
    assert "short does not resolve" in out  # `web` is a name only in the Service's own namespace
    assert "system:serviceaccount:other:default" in out

    # kubectl exec runs in the Pod's namespace (its hosts file, its address), and port-forward reaches the
    # Pod's own localhost, as on a node, even a server bound to 127.0.0.1 inside it
    hosts = k.kubectl("exec", "web-a", "--", "cat", "/etc/hosts").stdout
    assert f"{cip}\tweb.default.svc.cluster.local" in hosts and f"{a['status']['podIP']}\tweb-a" in hosts
    assert k.kubectl("exec", "web-a", "--", "hostname").stdout.strip() == "web-a"  # the Pod's UTS namespace
    apply_obj(k, web_pod("local-only", bind="127.0.0.1", labels={"app": "local"}))
    wait_for(lambda: k.kjson("get", "pod", "local-only")["status"].get("phase") == "Running", timeout=60, what="local-only running")
    port = free_port()
    pf = subprocess.Popen([kubectl_bin(), "--kubeconfig", str(k.kubeconfig), "port-forward", "pod/local-only", f"{port}:8080"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        text = wait_for(lambda: _get(f"http://127.0.0.1:{port}/"), timeout=30, what="port-forward to answer")
        assert text.endswith("local-only")
    finally:
        pf.terminate()
        pf.wait(10)

    # deleting a Pod removes its namespace and frees its address
    uid = a["metadata"]["uid"]
    assert Path(f"/run/netns/ketch-{uid}").exists()
    k.kubectl("delete", "pod", "web-a", "--wait=true")
    wait_for(lambda: not Path(f"/run/netns/ketch-{uid}").exists(), timeout=30, what="the namespace removed")
    assert not Path(f"/run/ketch/ipam/{a['status']['podIP']}").exists()


def _get(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=3).text
    except httpx.HTTPError:
        return None


@needs_netns
def test_a_pods_namespace_and_address_survive_kill_9_of_ketch(netns_ketch):
    k = netns_ketch
    apply_obj(k, web_pod("keep"))
    before = ready(k, "keep")
    ip, uid = before["status"]["podIP"], before["metadata"]["uid"]
    k.kill9()
    assert _get(f"http://{ip}:8080/").endswith("keep")  # the Pod runs on without ketch
    k.start()
    after = ready(k, "keep")
    assert after["status"]["podIP"] == ip and after["status"]["containerStatuses"][0]["restartCount"] == 0
    assert _get(f"http://{ip}:8080/").endswith("keep")
    k.kubectl("delete", "pod", "keep", "--wait=true")
    wait_for(lambda: not Path(f"/run/netns/ketch-{uid}").exists(), timeout=30, what="the namespace removed")


@pytest.mark.parametrize("mode", ["host", "netns"])
def test_pytorch_ddp_peers_find_each_other_in_either_network(tmp_path, mode):
    """The training operator's wiring in both networks: 127.0.0.1 and a port of the master's own on the
    host network; the master's headless Service name (resolved in each Pod's hosts file) with Pods of their
    own addresses. Gloo finds each rank's address from its hostname, which is the Pod's in netns mode."""
    if mode == "netns" and netns_unavailable() is not None:
        pytest.skip(f"network namespaces: {netns_unavailable()}")
    pytest.importorskip("torch", reason="needs the torch extra")
    script = str(Path(__file__).parent / "training_scripts" / "ddp_train.py")
    k = make_ketch(tmp_path, env={"KETCH_POD_NETWORK": mode}).start()
    try:
        rs = {"replicas": 1, "template": {"spec": {"containers": [{"name": "pytorch", "image": "python:3.11", "command": [sys.executable, script]}]}}}
        job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "ddp", "namespace": "default"},
               "spec": {"pytorchReplicaSpecs": {"Master": rs, "Worker": rs}}}
        k.kubectl("create", "-f", "-", input=yaml.safe_dump(job))
        k.kubectl("wait", "--for=condition=Succeeded", "pytorchjob/ddp", "--timeout=180s", timeout=200)
        pods = {n: k.kjson("get", "pod", n) for n in ("ddp-master-0", "ddp-worker-0")}
        addr = {e["name"]: e.get("value") for e in pods["ddp-worker-0"]["spec"]["containers"][0]["env"]}["MASTER_ADDR"]
        ips = {p["status"]["podIP"] for p in pods.values()}
        if mode == "netns":
            assert addr == "ddp-master-0" and len(ips) == 2
        else:
            assert addr == "127.0.0.1" and ips == {"127.0.0.1"}
        for rank, n in enumerate(pods):
            m = re.search(r"rank=(\d+) world=2 .* in_sync=True", k.kubectl("logs", n).stdout)
            assert m and int(m.group(1)) == rank
    finally:
        k.stop()


@needs_netns
def test_a_neighbour_on_the_lan_cannot_reach_the_api_or_a_cluster_ip_through_the_bridge(netns_ketch):
    """A host accepts packets for any of its addresses on any interface: a neighbour that routes 10.244.0.0/16
    and 10.96.0.0/16 to this machine must not reach ketch's API forwarder (which would look like loopback to
    ketch) nor a Service's proxy. The neighbour is a network namespace on a veth of its own, not the bridge."""
    k = netns_ketch
    apply_obj(k, web_pod("web-a"))
    ready(k, "web-a")
    k.kubectl("create", "service", "clusterip", "web", "--tcp=80:8080")
    cip = k.kjson("get", "service", "web")["spec"]["clusterIP"]
    wait_for(lambda: _get(f"http://{cip}/"), timeout=30, what="the ClusterIP to answer on this machine")
    lan, veth = "ketch-test-lan", "kvtestlan0"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    subprocess.run(["ip", "netns", "del", lan], capture_output=True)
    ip("netns", "add", lan)
    try:
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", lan)
        ip("addr", "add", "192.168.77.1/24", "dev", veth)
        ip("link", "set", veth, "up")
        for cmd in (["addr", "add", "192.168.77.2/24", "dev", "eth0"], ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"],
                    ["route", "add", "10.244.0.0/16", "via", "192.168.77.1"], ["route", "add", "10.96.0.0/16", "via", "192.168.77.1"]):
            ip("-n", lan, *cmd)
        probe = ("import socket, sys\n"
                 "for host, port in [('10.244.0.1', int(sys.argv[1])), (sys.argv[2], 80)]:\n"
                 "    s = socket.create_connection((host, port), timeout=5)\n"  # TCP connects: the address is local
                 "    s.sendall(b'GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
                 "    s.settimeout(5)\n"
                 "    try:\n"
                 "        got = s.recv(100)\n"
                 "    except ConnectionResetError:\n"
                 "        got = b''\n"
                 "    print(host, repr(got))\n")
        out = subprocess.run(["ip", "netns", "exec", lan, sys.executable, "-c", probe, str(k.port), cip],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [f"10.244.0.1 {b''!r}", f"{cip} {b''!r}"], out.stdout  # closed, nothing served
    finally:
        subprocess.run(["ip", "netns", "del", lan], capture_output=True)
        subprocess.run(["ip", "link", "del", veth], capture_output=True)
