"""Pods run as processes: through the real kubectl against a real ketch, no mocks."""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import wait_for


def pod_yaml(name: str, command: list[str], restart: str = "Never", ns: str = "default", extra: str = "") -> str:
    return textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: {ns}}}
        spec:
          restartPolicy: {restart}
          containers:
          - name: main
            image: python:3.11
            command: {json.dumps(command)}
        """) + extra


def phase(k, name: str, ns: str = "default") -> str:
    return k.kjson("get", "pod", name, "-n", ns).get("status", {}).get("phase", "")


@pytest.fixture(scope="module")
def k(shared_ketch):
    return shared_ketch


def test_node_registered(k):
    nodes = k.kjson("get", "nodes")["items"]
    assert len(nodes) == 1
    st = nodes[0]["status"]
    assert {"cpu", "memory", "nvidia.com/gpu", "pods"} <= set(st["capacity"])
    assert {"cpu", "memory", "nvidia.com/gpu"} <= set(st["allocatable"])
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in st["conditions"])
    assert st["nodeInfo"]["kubeletVersion"].startswith("v1.")
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]


def test_pod_prints_and_succeeds(k):
    k.kubectl("apply", "-f", "-", input=pod_yaml("hello", ["python", "-c", "import sys; print('hello from ketch'); print('to stderr', file=sys.stderr)"]))
    wait_for(lambda: phase(k, "hello") == "Succeeded", what="hello Succeeded")
    pod = k.kjson("get", "pod", "hello")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["state"]["terminated"]["exitCode"] == 0
    assert cs["state"]["terminated"]["reason"] == "Completed"
    assert pod["spec"]["nodeName"] == k.kjson("get", "nodes")["items"][0]["metadata"]["name"]
    assert pod["status"]["podIP"] == "127.0.0.1" and pod["status"]["startTime"]
    out = k.kubectl("logs", "hello").stdout
    assert "hello from ketch" in out and "to stderr" in out
    ts = k.kubectl("logs", "hello", "--timestamps").stdout.splitlines()
    assert ts[0].split(" ", 1)[0].endswith("Z") and ts[0].split(" ", 1)[1] == "hello from ketch"
    assert k.kubectl("logs", "hello", "--tail=1").stdout == "to stderr\n"
    assert "Completed" in k.kubectl("get", "pod", "hello").stdout


def test_pod_fails_with_exit_code(k):
    k.kubectl("apply", "-f", "-", input=pod_yaml("fails", ["sh", "-c", "echo about to fail; exit 3"]))
    wait_for(lambda: phase(k, "fails") == "Failed", what="fails Failed")
    t = k.kjson("get", "pod", "fails")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["exitCode"] == 3 and t["reason"] == "Error"
    assert k.kubectl("logs", "fails").stdout == "about to fail\n"


def test_command_not_found_is_reported(k):
    k.kubectl("apply", "-f", "-", input=pod_yaml("nocmd", ["no-such-command-xyz"]))
    wait_for(lambda: phase(k, "nocmd") == "Failed", what="nocmd Failed")
    t = k.kjson("get", "pod", "nocmd")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["reason"] == "ContainerCannotRun"
    assert 'exec: "no-such-command-xyz": executable file not found in $PATH' in t["message"]


def test_no_command_and_unknown_image_fails_clearly(k):
    k.kubectl("apply", "-f", "-", input=textwrap.dedent("""
        apiVersion: v1
        kind: Pod
        metadata: {name: nginx}
        spec:
          restartPolicy: Never
          containers:
          - {name: web, image: nginx:1.27}
        """))
    wait_for(lambda: phase(k, "nginx") == "Failed", what="nginx Failed")
    t = k.kjson("get", "pod", "nginx")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert t["reason"] == "ContainerCannotRun" and "nginx:1.27" in t["message"] and "images.yaml" in t["message"]


def test_python_resolves_to_ketch_environment(k):
    import sys

    k.kubectl("apply", "-f", "-", input=pod_yaml("which", ["python", "-c", "import sys; print(sys.prefix)"]))
    wait_for(lambda: phase(k, "which") == "Succeeded", what="which Succeeded")
    assert k.kubectl("logs", "which").stdout.strip() == sys.prefix


def test_kubectl_wait_ready_and_delete_kills_tree(k, tmp_path):
    import psutil

    marker = tmp_path / "pids"
    script = f"import os,subprocess,time; c=subprocess.Popen(['sleep','300']); open({str(marker)!r},'w').write(f'{{os.getpid()}} {{c.pid}}'); time.sleep(300)"
    k.kubectl("apply", "-f", "-", input=pod_yaml("tree", ["python", "-c", script], restart="Always"))
    k.kubectl("wait", "--for=condition=Ready", "pod/tree", "--timeout=30s")
    wait_for(lambda: marker.exists() and marker.read_text().count(" ") == 1, what="pids written")
    pids = [int(x) for x in marker.read_text().split()]
    assert all(psutil.pid_exists(p) for p in pids)
    k.kubectl("delete", "pod", "tree", "--timeout=30s")
    assert k.kubectl("get", "pod", "tree", check=False).returncode != 0

    def gone(p: int) -> bool:
        try:
            return psutil.Process(p).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(lambda: all(gone(p) for p in pids), timeout=10, what="the pod's process tree ended")


def test_logs_follow(k):
    k.kubectl("apply", "-f", "-", input=pod_yaml("follow", ["sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.3; done"]))
    wait_for(lambda: phase(k, "follow") in ("Running", "Succeeded"), what="follow running")
    out = k.kubectl("logs", "-f", "follow", timeout=30).stdout
    assert out == "line 1\nline 2\nline 3\n"
