"""Server-side and client-side apply, driven by the real kubectl against a real ketch server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import kubectl_bin


def _ns(k, name: str) -> str:
    k.kubectl("create", "namespace", name)
    return name


def _cm(name: str, data: dict, labels: dict | None = None) -> str:
    md: dict = {"name": name}
    if labels:
        md["labels"] = labels
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data})


def _managers(obj: dict) -> dict[str, dict]:
    return {f"{m['manager']}/{m['operation']}": m["fieldsV1"] for m in obj["metadata"].get("managedFields", [])}


def test_server_side_apply_sets_and_removes_fields(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "ssa-basic")
    r = k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=_cm("a", {"x": "1", "k": "2"}, {"app": "a", "tier": "t"}))
    assert "serverside-applied" in r.stdout
    obj = k.kjson("get", "cm", "a", "-n", ns, "--show-managed-fields")
    assert obj["data"] == {"x": "1", "k": "2"}
    fields = _managers(obj)["kubectl/Apply"]
    assert fields["f:data"] == {"f:x": {}, "f:k": {}}
    assert fields["f:metadata"] == {"f:labels": {"f:app": {}, "f:tier": {}}}
    # Re-apply without data.k and label tier: both are removed, since no one else owns them.
    k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=_cm("a", {"x": "1"}, {"app": "a"}))
    obj = k.kjson("get", "cm", "a", "-n", ns, "--show-managed-fields")
    assert obj["data"] == {"x": "1"}
    assert obj["metadata"]["labels"] == {"app": "a"}
    assert _managers(obj)["kubectl/Apply"]["f:data"] == {"f:x": {}}
    # Re-applying the same thing is not a write.
    rv = obj["metadata"]["resourceVersion"]
    k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=_cm("a", {"x": "1"}, {"app": "a"}))
    assert k.kjson("get", "cm", "a", "-n", ns)["metadata"]["resourceVersion"] == rv


def test_server_side_apply_conflicts_and_force(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "ssa-conflict")
    k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=_cm("a", {"x": "1", "k": "2"}))
    # A second manager changing x conflicts, naming the field and the owner.
    r = k.kubectl("apply", "--server-side", "--field-manager", "other", "-n", ns, "-f", "-", input=_cm("a", {"x": "2"}), check=False)
    assert r.returncode != 0
    assert 'conflict with "kubectl": .data.x' in r.stderr
    assert k.kjson("get", "cm", "a", "-n", ns)["data"] == {"x": "1", "k": "2"}  # nothing written
    # The same value is shared ownership, not a conflict.
    k.kubectl("apply", "--server-side", "--field-manager", "sharer", "-n", ns, "-f", "-", input=_cm("a", {"k": "2"}))
    # --force-conflicts takes ownership.
    k.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager", "other", "-n", ns, "-f", "-", input=_cm("a", {"x": "2"}))
    obj = k.kjson("get", "cm", "a", "-n", ns, "--show-managed-fields")
    assert obj["data"] == {"x": "2", "k": "2"}
    m = _managers(obj)
    assert m["other/Apply"]["f:data"] == {"f:x": {}}
    assert m["kubectl/Apply"]["f:data"] == {"f:k": {}}
    assert m["sharer/Apply"]["f:data"] == {"f:k": {}}
    # The first manager stops applying k: k stays, since "sharer" still owns it.
    k.kubectl("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-", input=_cm("a", {"x": "3"}))
    obj = k.kjson("get", "cm", "a", "-n", ns)
    assert obj["data"] == {"x": "3", "k": "2"}


def test_update_then_apply_conflicts(shared_ketch, tmp_path: Path):
    """kubectl patch / edit take ownership of what they change; the applier then conflicts on it."""
    k = shared_ketch
    ns = _ns(k, "ssa-update")
    k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=_cm("a", {"x": "1", "k": "2"}))
    k.kubectl("patch", "cm", "a", "-n", ns, "-p", '{"data":{"x":"5"}}')
    obj = k.kjson("get", "cm", "a", "-n", ns, "--show-managed-fields")
    m = _managers(obj)
    assert m["kubectl-patch/Update"] == {"f:data": {"f:x": {}}}
    assert m["kubectl/Apply"]["f:data"] == {"f:k": {}}
    r = k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=_cm("a", {"x": "1", "k": "2"}), check=False)
    assert r.returncode != 0 and 'conflict with "kubectl-patch": .data.x' in r.stderr
    # kubectl edit, with a scripted editor.
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/k: \"2\"/k: \"7\"/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "KUBE_EDITOR": str(editor)}
    cmd = [kubectl_bin(), "--kubeconfig", str(k.kubeconfig), "edit", "cm", "a", "-n", ns]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert k.kjson("get", "cm", "a", "-n", ns)["data"]["k"] == "7"
    r = k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=_cm("a", {"k": "2"}), check=False)
    assert r.returncode != 0 and 'conflict with "kubectl-edit": .data.k' in r.stderr
    k.kubectl("apply", "--server-side", "--force-conflicts", "-n", ns, "-f", "-", input=_cm("a", {"x": "1", "k": "2"}))
    assert k.kjson("get", "cm", "a", "-n", ns)["data"] == {"x": "1", "k": "2"}


def test_server_side_apply_associative_lists(shared_ketch):
    """Lists with merge keys (containers by name, env by name) are owned item by item."""
    k = shared_ketch
    ns = _ns(k, "ssa-lists")
    svc = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
        "spec": {"selector": {"app": "s"}, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "grpc", "port": 90, "protocol": "TCP"}]},
    }
    k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(svc))
    other = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"name": "metrics", "port": 9090, "protocol": "TCP"}]}}
    k.kubectl("apply", "--server-side", "--field-manager", "metrics", "-n", ns, "-f", "-", input=json.dumps(other))
    ports = {p["port"] for p in k.kjson("get", "svc", "s", "-n", ns)["spec"]["ports"]}
    assert ports == {80, 90, 9090}
    svc["spec"]["ports"] = svc["spec"]["ports"][:1]
    k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(svc))
    ports = {p["port"] for p in k.kjson("get", "svc", "s", "-n", ns)["spec"]["ports"]}
    assert ports == {80, 9090}


def test_server_side_apply_custom_resource(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "ssa-cr")
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.apply.example.com"},
        "spec": {
            "group": "apply.example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "size": {"type": "integer"}, "color": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}}}}}}],
        },
    }
    k.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(crd))
    k.kubectl("wait", "--for=condition=Established", "crd/widgets.apply.example.com", "--timeout=20s")
    w = {"apiVersion": "apply.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1, "color": "red", "tags": ["a"]}}
    k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(w))
    del w["spec"]["color"]
    w["spec"]["tags"] = ["b"]
    k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(w))
    assert k.kjson("get", "widget", "w", "-n", ns)["spec"] == {"size": 1, "tags": ["b"]}


@pytest.mark.parametrize("server_side", [False, True])
def test_client_side_apply_three_way_merge(shared_ketch, server_side):
    k = shared_ketch
    ns = _ns(k, f"csa-cr-{int(server_side)}")
    k.kubectl("apply", "-n", ns, "-f", "-", input=_cm("a", {"x": "1", "k": "2"}, {"app": "a", "tier": "t"}))
    k.kubectl("apply", "-n", ns, "-f", "-", input=_cm("a", {"x": "1"}, {"app": "a"}))
    obj = k.kjson("get", "cm", "a", "-n", ns)
    assert obj["data"] == {"x": "1"} and obj["metadata"]["labels"] == {"app": "a"}
    # A field someone else added (not in last-applied) survives the 3-way merge.
    k.kubectl("patch", "cm", "a", "-n", ns, "-p", '{"data":{"extra":"e"}}')
    k.kubectl("apply", "-n", ns, "-f", "-", input=_cm("a", {"x": "2"}, {"app": "a"}))
    assert k.kjson("get", "cm", "a", "-n", ns)["data"] == {"x": "2", "extra": "e"}
    if server_side:
        # Migrating from client-side to server-side apply keeps working and removes fields too.
        k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=_cm("a", {"x": "3"}))
        assert k.kjson("get", "cm", "a", "-n", ns)["data"]["x"] == "3"


def test_client_side_apply_pod_labels_and_image(shared_ketch):
    """Pods: strategic merge patch merges containers by name; removed labels and annotations go away."""
    k = shared_ketch
    ns = _ns(k, "csa-pod")

    def pod(labels: dict, image2: str, ann: dict) -> str:
        return json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": labels, "annotations": ann},
            "spec": {"nodeName": "none-such", "containers": [
                {"name": "c1", "image": "img1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "c2", "image": image2},
            ]},
        })

    k.kubectl("apply", "-n", ns, "-f", "-", input=pod({"a": "1", "b": "2"}, "img2", {"note": "x"}))
    k.kubectl("apply", "-n", ns, "-f", "-", input=pod({"a": "1"}, "img3", {}))
    obj = k.kjson("get", "pod", "p", "-n", ns)
    assert obj["metadata"]["labels"] == {"a": "1"}
    assert "note" not in (obj["metadata"].get("annotations") or {})
    cs = {c["name"]: c for c in obj["spec"]["containers"]}
    assert cs["c2"]["image"] == "img3" and cs["c1"]["image"] == "img1"
    assert [e["name"] for e in cs["c1"]["env"]] == ["A", "B"]
    # Changing something immutable is refused with the field named, and nothing is stored.
    bad = json.loads(pod({"a": "1"}, "img3", {}))
    bad["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    r = k.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert r.returncode != 0
    assert 'The Pod "p" is invalid: spec: Forbidden: pod updates may not change fields' in r.stderr
    assert len(k.kjson("get", "pod", "p", "-n", ns)["spec"]["containers"][0]["env"]) == 2


def test_client_side_apply_removes_field_in_custom_resource(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "csa-cr")
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.apply.example.com"},
        "spec": {
            "group": "apply.example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "size": {"type": "integer"}, "color": {"type": "string"},
                    "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}}}}}],
        },
    }
    k.kubectl("apply", "-f", "-", input=json.dumps(crd))
    k.kubectl("wait", "--for=condition=Established", "crd/gadgets.apply.example.com", "--timeout=20s")
    g = {"apiVersion": "apply.example.com/v1", "kind": "Gadget", "metadata": {"name": "g"},
         "spec": {"size": 1, "color": "red", "items": [{"name": "a"}, {"name": "b"}]}}
    k.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(g))
    del g["spec"]["color"]
    g["spec"]["items"] = [{"name": "b"}]
    k.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(g))
    assert k.kjson("get", "gadget", "g", "-n", ns)["spec"] == {"size": 1, "items": [{"name": "b"}]}


def test_apply_many_objects_in_one_file(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "apply-many")
    docs = "\n---\n".join(_cm(f"c{i}", {"i": str(i)}) for i in range(30))
    r = k.kubectl("apply", "-n", ns, "-f", "-", input=docs)
    assert r.stdout.count("created") == 30
    r = k.kubectl("apply", "-n", ns, "-f", "-", input=docs)
    assert r.stdout.count("unchanged") == 30
    assert {o["metadata"]["name"] for o in k.kjson("get", "cm", "-n", ns)["items"]} >= {f"c{i}" for i in range(30)}


def test_conflict_messages_name_every_field_and_list_item(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "ssa-messages")
    k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=_cm("a", {"x": "1", "k": "2"}))
    r = k.kubectl("apply", "--server-side", "--field-manager", "other", "-n", ns, "-f", "-", input=_cm("a", {"x": "9", "k": "9"}), check=False)
    assert r.returncode != 0
    assert 'Apply failed with 2 conflicts: conflicts with "kubectl":\n- .data.k\n- .data.x' in r.stderr
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    k.kubectl("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(svc))
    svc["spec"]["ports"][0]["targetPort"] = 9090
    r = k.kubectl("apply", "--server-side", "--field-manager", "other", "-n", ns, "-f", "-", input=json.dumps(svc), check=False)
    assert r.returncode != 0 and 'conflict with "kubectl": .spec.ports[port=80].targetPort' in r.stderr
