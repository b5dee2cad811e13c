"""kubectl exec against ketch (pods/exec over WebSocket, v5.channel.k8s.io): the real kubectl, a real pod."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import wait_for


@pytest.fixture(scope="module")
def k(shared_ketch):
    shared_ketch.kubectl("apply", "-f", "-", input=textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: box}}
        spec:
          containers:
          - name: main
            image: python:3.11
            command: {json.dumps([sys.executable, "-c", "import time; time.sleep(600)"])}
            env: [{{name: GREETING, value: hello}}]
            volumeMounts: [{{name: scratch, mountPath: /data}}]
          volumes: [{{name: scratch, emptyDir: {{}}}}]
        """))
    shared_ketch.kubectl("wait", "--for=condition=Ready", "pod/box", "--timeout=60s", timeout=70)
    return shared_ketch


def test_exec_streams_exit_code_env_and_mounts(k):
    r = k.kubectl("exec", "box", "--", "sh", "-c", "echo out $GREETING; echo oops >&2; echo x > /data/f; cat /data/f; exit 7", check=False)
    assert r.returncode == 7, r.stderr
    assert r.stdout.split() == ["out", "hello", "x"]
    assert "oops" in r.stderr and "command terminated with exit code 7" in r.stderr
    ok = k.kubectl("exec", "box", "-c", "main", "--", "python", "-c", "import os; print(os.environ['HOSTNAME'])")
    assert ok.stdout.strip() == "box"


def test_exec_with_stdin(k):
    r = k.kubectl("exec", "-i", "box", "--", "sh", "-c", "tr a-z A-Z", input="piped through\n")
    assert r.stdout == "PIPED THROUGH\n"


def test_exec_errors(k):
    r = k.kubectl("exec", "box", "--", "no-such-command", check=False)
    assert r.returncode != 0 and 'exec: "no-such-command": executable file not found' in r.stderr
    r = k.kubectl("exec", "box", "-c", "nope", "--", "true", check=False)
    assert r.returncode != 0 and "nope" in r.stderr


@pytest.mark.skipif(shutil.which("script") is None, reason="util-linux script is needed to give kubectl a terminal")
def test_exec_with_a_terminal(k):
    from conftest import kubectl_bin

    cmd = f"{kubectl_bin()} --kubeconfig {k.kubeconfig} exec -it box -- sh -c 'tty; exit 3'"
    r = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert "/dev/pts/" in r.stdout


def test_exec_into_a_container_that_has_exited(k):
    k.kubectl("apply", "-f", "-", input=textwrap.dedent(f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: half}}
        spec:
          restartPolicy: Never
          containers:
          - {{name: runner, image: python:3.11, command: {json.dumps([sys.executable, "-c", "import time; time.sleep(600)"])}}}
          - {{name: quitter, image: python:3.11, command: ["true"]}}
        """))

    def quit_() -> bool:
        st = k.kjson("get", "pod", "half").get("status", {})
        return any(c["name"] == "quitter" and "terminated" in c["state"] for c in st.get("containerStatuses") or [])

    wait_for(quit_, what="quitter exited")
    r = k.kubectl("exec", "half", "-c", "quitter", "--", "true", check=False)
    assert r.returncode != 0 and 'container not found ("quitter")' in r.stderr
    assert k.kubectl("exec", "half", "-c", "runner", "--", "true").returncode == 0
