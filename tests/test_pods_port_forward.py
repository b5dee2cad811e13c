"""``kubectl port-forward`` (SPDY tunnelled over WebSocket) to a Pod and to a Service, and the kubernetes
Python client's port-forward (WebSocket channels), against a Pod serving HTTP."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from conftest import free_port, kubectl_bin, wait_for


@pytest.fixture(scope="module")
def web(shared_ketch):
    k = shared_ketch
    port = free_port()
    k.kubectl("create", "namespace", "pf")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "pf", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": "python", "command": ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                    "ports": [{"containerPort": port, "name": "http"}],
                                    "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1}}]}}
    k.kubectl("apply", "-f", "-", input=json.dumps(pod))
    k.kubectl("wait", "--for=condition=Ready", "pod/web", "-n", "pf", "--timeout=30s")
    return k, port


def _forward(k, target: str, local: int, remote: int | str) -> subprocess.Popen:
    p = subprocess.Popen([kubectl_bin(), "--kubeconfig", str(k.kubeconfig), "port-forward", "-n", "pf", target, f"{local}:{remote}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if "Forwarding from" not in line:
        p.kill()
        raise AssertionError(f"kubectl port-forward did not start: {line} {p.stderr.read()}")
    return p


def _get(url: str) -> httpx.Response:
    return wait_for(lambda: _try(url), 10, 0.1, url)


def _try(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


def test_kubectl_port_forward_pod(web):
    k, port = web
    local = free_port()
    p = _forward(k, "pod/web", local, port)
    try:
        for _ in range(3):  # several connections through one session
            r = _get(f"http://127.0.0.1:{local}/")
            assert r.status_code == 200 and "Directory listing" in r.text
        big = _get(f"http://127.0.0.1:{local}/nonexistent-{'x' * 100}")
        assert big.status_code == 404
    finally:
        p.terminate()
        p.wait(10)


def test_kubectl_port_forward_service(web):
    k, port = web
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "pf"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}
    k.kubectl("apply", "-f", "-", input=json.dumps(svc))
    local = free_port()
    p = _forward(k, "svc/web", local, 80)  # kubectl resolves the Service to a Pod and port
    try:
        assert _get(f"http://127.0.0.1:{local}/").status_code == 200
    finally:
        p.terminate()
        p.wait(10)


def test_port_forward_to_a_closed_port_reports_the_error(web):
    k, _ = web
    local, closed = free_port(), free_port()
    p = _forward(k, "pod/web", local, closed)
    try:
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{local}/", timeout=5)
        time.sleep(0.5)
    finally:
        p.terminate()
        _, err = p.communicate(timeout=10)
    assert "failed to connect" in err or "error forwarding port" in err, err


def test_python_client_port_forward(web):
    k, port = web
    from kubernetes import client, config
    from kubernetes.stream import portforward

    api = client.CoreV1Api(config.new_client_from_config(str(k.kubeconfig)))
    pf = portforward(api.connect_get_namespaced_pod_portforward, "web", "pf", ports=str(port))
    sock = pf.socket(port)
    sock.setblocking(True)
    sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    assert data.startswith(b"HTTP/1.0 200") and b"Directory listing" in data
    assert pf.error(port) is None
    pf.close()
