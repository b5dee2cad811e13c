"""`ketch apply|get|delete`: the thin CLI conveniences, against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import SRC


def ketch_cli(k, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KETCH_SERVER": k.url, "KUBECONFIG": str(k.kubeconfig), "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "ketch", *args], input=input, env=env, capture_output=True, text=True, timeout=60)


def test_ketch_apply_get_delete(shared_ketch):
    k = shared_ketch
    k.kubectl("create", "namespace", "cli")
    docs = "\n---\n".join(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": {"a": "1"}}) for n in ("x", "y"))
    r = ketch_cli(k, "apply", "-n", "cli", "-f", "-", input=docs)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["configmaps/x serverside-applied", "configmaps/y serverside-applied"]
    assert k.kjson("get", "cm", "x", "-n", "cli")["data"] == {"a": "1"}
    # Removing a field from the manifest removes it (server-side apply, manager "ketch").
    r = ketch_cli(k, "apply", "-n", "cli", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"b": "2"}}))
    assert r.returncode == 0, r.stderr
    assert k.kjson("get", "cm", "x", "-n", "cli")["data"] == {"b": "2"}
    r = ketch_cli(k, "get", "cm", "-n", "cli")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "DATA", "AGE"] and any(line.startswith("x ") for line in lines)
    r = ketch_cli(k, "get", "configmap", "x", "-n", "cli", "-o", "json")
    assert json.loads(r.stdout)["data"] == {"b": "2"}
    r = ketch_cli(k, "get", "widgets")
    assert r.returncode == 1 and 'doesn\'t have a resource type "widgets"' in r.stderr
    r = ketch_cli(k, "apply", "-n", "cli", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad"}}))
    assert r.returncode == 1 and "metadata.name: Invalid value" in r.stderr
    r = ketch_cli(k, "delete", "cm", "x", "y", "-n", "cli")
    assert r.returncode == 0 and 'configmap "x" deleted' in r.stdout
    assert k.kubectl("get", "cm", "x", "-n", "cli", check=False).returncode != 0
    r = ketch_cli(k, "delete", "cm", "x", "-n", "cli")
    assert r.returncode == 1 and "not found" in r.stderr
