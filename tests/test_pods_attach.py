"""``kubectl attach``: a running container's output from now on, and its stdin when it has ``stdin: true``."""

from __future__ import annotations

import json

from conftest import wait_for


def _running(k, name: str) -> None:
    wait_for(lambda: k.kjson("get", "pod", name, "-n", "att")["status"].get("phase") == "Running", 30, 0.1, f"{name} running")


def test_attach_streams_output_until_the_container_ends(shared_ketch):
    k = shared_ketch
    k.kubectl("create", "namespace", "att")
    script = "import time\nfor i in range(12):\n    print('tick', i, flush=True)\n    time.sleep(0.25)\n"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ticker", "namespace": "att"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "python", "command": ["python3", "-c", script]}]}}
    k.kubectl("apply", "-f", "-", input=json.dumps(pod))
    _running(k, "ticker")
    r = k.kubectl("attach", "ticker", "-n", "att", timeout=30)
    assert "tick 11" in r.stdout


def test_attach_with_stdin(shared_ketch):
    k = shared_ketch
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader", "namespace": "att"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "python", "stdin": True,
                    "command": ["python3", "-c", "print('got', input().upper(), flush=True)"]}]}}
    k.kubectl("apply", "-f", "-", input=json.dumps(pod))
    _running(k, "reader")
    r = k.kubectl("attach", "-i", "reader", "-n", "att", input="hello\n", timeout=30)
    assert "got HELLO" in r.stdout
    wait_for(lambda: k.kjson("get", "pod", "reader", "-n", "att")["status"].get("phase") == "Succeeded", 20, 0.1, "reader done")
    # a container without stdin: true refuses stdin
    pod2 = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "deaf", "namespace": "att"},
            "spec": {"containers": [{"name": "c", "image": "python", "command": ["sleep", "60"]}]}}
    k.kubectl("apply", "-f", "-", input=json.dumps(pod2))
    _running(k, "deaf")
    r = k.kubectl("attach", "-i", "deaf", "-n", "att", input="x\n", check=False, timeout=30)
    assert r.returncode != 0 and "stdin" in (r.stderr + r.stdout)
