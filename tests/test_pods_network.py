"""Pods share the host's network in ketch (no per-Pod network namespace yet, issue 15 item 4); the kubelet
says so on each Pod with an event instead of leaving it silent, and the limitation it names is real: two
Pods listening on one port collide."""

from __future__ import annotations

import json
import socket

from conftest import wait_for

SERVE = "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); print('listening', flush=True); time.sleep(600)"


def pod(name: str, port: int, host_network: bool = False) -> str:
    spec = {"restartPolicy": "Never", "containers": [{"name": "c", "image": "python", "command": ["python3", "-c", SERVE, str(port)]}]}
    if host_network:
        spec["hostNetwork"] = True
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})


def events(k, name: str) -> list[dict]:
    return k.kjson("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shared_host_network_is_said_on_the_pod_and_is_real(ketch):
    k = ketch
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
