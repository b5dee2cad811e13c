"""The API server against the real kubectl and raw HTTP: CRUD, CRDs, validation, watch, conflicts,
garbage collection and durability across kill -9."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from conftest import make_ketch, wait_for

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Phase, type: string, jsonPath: .status.phase}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1}
              color: {type: string, enum: [red, blue], default: blue}
          status:
            type: object
            properties:
              phase: {type: string}
"""


def test_configmap_crud_with_kubectl(shared_ketch):
    k = shared_ketch
    k.kubectl("create", "namespace", "crud")
    out = k.kubectl("create", "configmap", "cfg", "-n", "crud", "--from-literal=a=1", "--from-literal=b=2").stdout
    assert "configmap/cfg created" in out
    table = k.kubectl("get", "configmaps", "-n", "crud").stdout
    assert "NAME" in table and "DATA" in table and "cfg" in table and " 2 " in table
    assert k.kubectl("get", "cm", "cfg", "-n", "crud", "-o", "jsonpath={.data.b}").stdout == "2"
    k.kubectl("patch", "cm", "cfg", "-n", "crud", "-p", '{"data":{"c":"3"}}')
    assert k.kjson("get", "cm", "cfg", "-n", "crud")["data"] == {"a": "1", "b": "2", "c": "3"}
    k.kubectl("label", "cm", "cfg", "-n", "crud", "tier=web")
    assert "cfg" in k.kubectl("get", "cm", "-n", "crud", "-l", "tier=web").stdout
    assert "No resources found" in k.kubectl("get", "cm", "-n", "crud", "-l", "tier,tier!=web").stderr
    k.kubectl("delete", "cm", "cfg", "-n", "crud")
    r = k.kubectl("get", "cm", "cfg", "-n", "crud", check=False)
    assert r.returncode != 0 and 'configmaps "cfg" not found' in r.stderr


def test_crd_registration_validation_and_printer_columns(shared_ketch):
    k = shared_ketch
    k.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    wait_for(lambda: k.kubectl("get", "crd", "widgets.example.com", "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}").stdout == "True")
    k.kubectl("create", "namespace", "crd")
    k.kubectl("apply", "-n", "crd", "-f", "-", input="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n")
    w = k.kjson("get", "widget", "w1", "-n", "crd")
    assert w["spec"] == {"size": 3, "color": "blue"}, "schema default applied"
    out = k.kubectl("get", "wd", "-n", "crd").stdout
    assert "SIZE" in out and "w1" in out and "3" in out
    # schema violations name the field
    bad = k.kubectl("apply", "-n", "crd", "-f", "-", check=False,
                    input="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 0, color: green}\n")
    assert bad.returncode != 0
    assert "spec.size" in bad.stderr and "greater than or equal to 1" in bad.stderr
    assert 'spec.color: Unsupported value: "green"' in bad.stderr
    missing = k.kubectl("apply", "-n", "crd", "-f", "-", check=False,
                        input="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w3}\nspec: {}\n")
    assert "spec.size: Required value" in missing.stderr
    unknown = k.kubectl("apply", "-n", "crd", "-f", "-", check=False,
                        input="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w4}\nspec: {size: 2, bogus: 1}\n")
    assert unknown.returncode != 0 and 'unknown field "spec.bogus"' in unknown.stderr
    # nothing half-written
    assert "w2" not in k.kubectl("get", "wd", "-n", "crd").stdout
    # status subresource: main endpoint ignores status; /status writes it
    k.kubectl("patch", "wd", "w1", "-n", "crd", "--type=merge", "-p", '{"status":{"phase":"Ignored"}}')
    assert "phase" not in k.kjson("get", "wd", "w1", "-n", "crd").get("status", {})
    k.kubectl("patch", "wd", "w1", "-n", "crd", "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Ready"}}')
    assert k.kjson("get", "wd", "w1", "-n", "crd")["status"]["phase"] == "Ready"
    k.kubectl("wait", "--for=jsonpath={.status.phase}=Ready", "wd/w1", "-n", "crd", "--timeout=10s")
    # generation moves with spec, not with status
    gen = k.kjson("get", "wd", "w1", "-n", "crd")["metadata"]["generation"]
    k.kubectl("patch", "wd", "w1", "-n", "crd", "--type=merge", "-p", '{"spec":{"size":5}}')
    assert k.kjson("get", "wd", "w1", "-n", "crd")["metadata"]["generation"] == gen + 1


def test_errors_are_status_objects(shared_ketch):
    with shared_ketch.http() as c:
        r = c.post("/api/v1/namespaces/default/configmaps", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["kind"] == "Status" and r.json()["reason"] == "BadRequest"
        r = c.post("/api/v1/namespaces/default/configmaps", json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}})
        assert r.status_code == 422
        body = r.json()
        assert body["reason"] == "Invalid" and "metadata.name" in body["message"] and "RFC 1123" in body["message"]
        r = c.get("/apis/nope.example.com/v1/things")
        assert r.status_code == 404 and r.json()["kind"] == "Status"
        r = c.post("/api/v1/namespaces/missing-ns/configmaps", json={"metadata": {"name": "x"}})
        assert r.status_code == 404 and 'namespaces "missing-ns" not found' in r.json()["message"]
        big = {"metadata": {"name": "big"}, "data": {"x": "a" * (4 * 1024 * 1024)}}
        r = c.post("/api/v1/namespaces/default/configmaps", json=big)
        assert r.status_code == 413
        assert c.get("/api/v1/namespaces/default/configmaps/big").status_code == 404


def test_optimistic_concurrency_and_generate_name(shared_ketch):
    with shared_ketch.http() as c:
        r = c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"generateName": "gen-"}, "data": {"a": "1"}})
        assert r.status_code == 201
        cm = r.json()
        name = cm["metadata"]["name"]
        assert name.startswith("gen-") and len(name) == len("gen-") + 5
        assert cm["metadata"]["uid"] and cm["metadata"]["creationTimestamp"]
        stale = json.loads(json.dumps(cm))
        cm["data"]["a"] = "2"
        r = c.put(f"/api/v1/namespaces/default/configmaps/{name}", json=cm)
        assert r.status_code == 200
        assert int(r.json()["metadata"]["resourceVersion"]) > int(stale["metadata"]["resourceVersion"])
        stale["data"]["a"] = "3"
        r = c.put(f"/api/v1/namespaces/default/configmaps/{name}", json=stale)
        assert r.status_code == 409 and r.json()["reason"] == "Conflict"
        assert "the object has been modified" in r.json()["message"]


def test_list_paging_and_selectors(shared_ketch):
    with shared_ketch.http() as c:
        c.post("/api/v1/namespaces", json={"metadata": {"name": "paging"}})
        for i in range(7):
            c.post("/api/v1/namespaces/paging/configmaps", json={"metadata": {"name": f"cm{i}", "labels": {"i": str(i), "even": str(i % 2 == 0).lower()}}})
        names, cont = [], None
        while True:
            params = {"limit": "3"} | ({"continue": cont} if cont else {})
            page = c.get("/api/v1/namespaces/paging/configmaps", params=params).json()
            names += [o["metadata"]["name"] for o in page["items"]]
            cont = page["metadata"].get("continue")
            if not cont:
                break
        assert [n for n in names if n != "kube-root-ca.crt"] == [f"cm{i}" for i in range(7)]  # every namespace has that one
        sel = c.get("/api/v1/namespaces/paging/configmaps", params={"labelSelector": "even=true,i notin (4)"}).json()
        assert [o["metadata"]["name"] for o in sel["items"]] == ["cm0", "cm2", "cm6"]
        fs = c.get("/api/v1/configmaps", params={"fieldSelector": "metadata.name=cm3,metadata.namespace=paging"}).json()
        assert [o["metadata"]["name"] for o in fs["items"]] == ["cm3"]


def test_watch_from_resource_version_and_gone(shared_ketch):
    with shared_ketch.http() as c:
        c.post("/api/v1/namespaces", json={"metadata": {"name": "watching"}})
        rv = c.get("/api/v1/namespaces/watching/configmaps").json()["metadata"]["resourceVersion"]
        c.post("/api/v1/namespaces/watching/configmaps", json={"metadata": {"name": "a"}})
        c.patch("/api/v1/namespaces/watching/configmaps/a", json={"data": {"k": "v"}}, headers={"content-type": "application/merge-patch+json"})
        c.delete("/api/v1/namespaces/watching/configmaps/a")
        events = []
        with c.stream("GET", "/api/v1/namespaces/watching/configmaps", params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "2"}) as s:
            for line in s.iter_lines():
                if line:
                    events.append(json.loads(line))
        assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
        r = c.get("/api/v1/namespaces/watching/configmaps", params={"watch": "true", "resourceVersion": "1", "timeoutSeconds": "1"})
        # rv 1 is still retained here, so this is a valid (empty) watch; a compacted rv gives 410 (see durability test)
        assert r.status_code == 200


def test_live_watch_sees_new_objects(shared_ketch):
    got: list[dict] = []
    with shared_ketch.http() as c:
        c.post("/api/v1/namespaces", json={"metadata": {"name": "live"}})

        def watcher():
            with httpx.Client(base_url=shared_ketch.url, timeout=30, headers=shared_ketch.headers) as wc, wc.stream(
                "GET", "/api/v1/namespaces/live/configmaps", params={"watch": "true", "timeoutSeconds": "5"}
            ) as s:
                for line in s.iter_lines():
                    if line and json.loads(line)["object"]["metadata"]["name"] != "kube-root-ca.crt":  # every namespace has it
                        got.append(json.loads(line))
                        if len(got) >= 2:
                            return

        t = threading.Thread(target=watcher)
        t.start()
        time.sleep(0.5)
        c.post("/api/v1/namespaces/live/configmaps", json={"metadata": {"name": "x1"}})
        c.post("/api/v1/namespaces/live/configmaps", json={"metadata": {"name": "x2"}})
        t.join(10)
    assert [e["object"]["metadata"]["name"] for e in got] == ["x1", "x2"]


def test_garbage_collection_background_foreground_orphan(shared_ketch):
    k = shared_ketch
    with k.http() as c:
        c.post("/api/v1/namespaces", json={"metadata": {"name": "gc"}})

        def mk(name: str, owner: dict | None = None) -> dict:
            md: dict = {"name": name}
            if owner:
                md["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"], "blockOwnerDeletion": True}]
            return c.post("/api/v1/namespaces/gc/configmaps", json={"metadata": md}).json()

        def exists(name: str) -> bool:
            return c.get(f"/api/v1/namespaces/gc/configmaps/{name}").status_code == 200

        p = mk("parent")
        mk("child", p)
        c.delete("/api/v1/namespaces/gc/configmaps/parent")
        wait_for(lambda: not exists("child"), 10, what="background GC of child")

        p = mk("fparent")
        ch = mk("fchild", p)
        mk("fgrandchild", ch)
        c.request("DELETE", "/api/v1/namespaces/gc/configmaps/fparent", json={"propagationPolicy": "Foreground"})
        wait_for(lambda: not exists("fparent") and not exists("fchild") and not exists("fgrandchild"), 10, what="foreground cascade")

        p = mk("oparent")
        mk("ochild", p)
        k.kubectl("delete", "cm", "oparent", "-n", "gc", "--cascade=orphan")
        wait_for(lambda: not exists("oparent"), 10)
        time.sleep(0.5)
        child = c.get("/api/v1/namespaces/gc/configmaps/ochild").json()
        assert child["metadata"].get("ownerReferences") in (None, [])


def test_finalizers_hold_deletion(shared_ketch):
    with shared_ketch.http() as c:
        c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "fin", "finalizers": ["example.com/hold"]}})
        r = c.delete("/api/v1/namespaces/default/configmaps/fin")
        assert r.status_code == 200
        obj = c.get("/api/v1/namespaces/default/configmaps/fin").json()
        assert obj["metadata"]["deletionTimestamp"]
        r = c.patch("/api/v1/namespaces/default/configmaps/fin", json={"metadata": {"finalizers": None}}, headers={"content-type": "application/merge-patch+json"})
        assert r.status_code == 200
        assert c.get("/api/v1/namespaces/default/configmaps/fin").status_code == 404


def test_namespace_deletion_removes_contents(shared_ketch):
    k = shared_ketch
    k.kubectl("create", "namespace", "doomed")
    k.kubectl("create", "configmap", "c1", "-n", "doomed")
    k.kubectl("delete", "namespace", "doomed", "--timeout=20s")
    r = k.kubectl("get", "namespace", "doomed", check=False)
    assert r.returncode != 0


def test_creates_follow_a_namespaces_life_at_once(shared_ketch):
    """Admission's namespace check (read from a cache the store's change feed keeps) follows each step at
    once: a create the moment a namespace exists succeeds, the moment it is Terminating is refused, and
    once it is gone is a 404; then the same name created again takes content again."""
    with shared_ketch.http() as c:
        ns, cms = "lifecycle", "/api/v1/namespaces/lifecycle/configmaps"
        for round_ in range(2):
            assert c.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
            r = c.post(cms, json={"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
            assert r.status_code == 201, r.text
            assert c.delete(f"/api/v1/namespaces/{ns}").status_code == 200
            r = c.post(cms, json={"metadata": {"name": f"late{round_}"}})
            assert r.status_code == 403 and r.json()["details"]["causes"][0]["reason"] == "NamespaceTerminating", r.text
            wait_for(lambda: c.get(f"{cms}/held").json().get("metadata", {}).get("deletionTimestamp"), timeout=20,
                     what="the namespace controller to delete its content")
            c.patch(f"{cms}/held", content=b'{"metadata":{"finalizers":null}}',
                    headers={"content-type": "application/merge-patch+json"}).raise_for_status()
            wait_for(lambda: c.get(f"/api/v1/namespaces/{ns}").status_code == 404, timeout=20, what="the namespace to go")
            r = c.post(cms, json={"metadata": {"name": "after"}})
            assert r.status_code == 404 and f'namespaces "{ns}" not found' in r.json()["message"], r.text


def test_kill9_loses_nothing_acknowledged_and_watch_resumes(tmp_path):
    k = make_ketch(tmp_path).start()
    try:
        acked = []
        with k.http() as c:
            rv0 = c.get("/api/v1/namespaces/default/configmaps").json()["metadata"]["resourceVersion"]
            for i in range(50):
                r = c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": f"d{i}"}, "data": {"i": str(i)}})
                assert r.status_code == 201
                acked.append(r.json()["metadata"]["name"])
        k.kill9()
        k.start()
        with k.http() as c:
            names = {o["metadata"]["name"] for o in c.get("/api/v1/namespaces/default/configmaps").json()["items"]}
            assert set(acked) <= names
            events = []
            with c.stream("GET", "/api/v1/namespaces/default/configmaps", params={"watch": "true", "resourceVersion": rv0, "timeoutSeconds": "1"}) as s:
                for line in s.iter_lines():
                    if line:
                        events.append(json.loads(line))
            assert [e["object"]["metadata"]["name"] for e in events] == acked
    finally:
        k.stop()


@pytest.mark.parametrize("history", ["5"])
def test_watch_too_old_gets_410(tmp_path, history):
    k = make_ketch(tmp_path, env={"KETCH_WATCH_HISTORY": history}).start()
    try:
        with k.http() as c:
            for i in range(20):
                c.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": f"h{i}"}})
            with c.stream("GET", "/api/v1/namespaces/default/configmaps", params={"watch": "true", "resourceVersion": "2", "timeoutSeconds": "2"}) as s:
                lines = [json.loads(x) for x in s.iter_lines() if x]
            assert lines and lines[0]["type"] == "ERROR" and lines[0]["object"]["code"] == 410
    finally:
        k.stop()


def test_label_selectors_follow_relabels_and_status_writes(shared_ketch):
    """Equality selectors are answered from the store's label index: it must follow every label change,
    and a status write (which leaves the index alone) must not lose the object from it."""
    k = shared_ketch
    k.kubectl("create", "namespace", "relabel")
    k.kubectl("run", "p", "-n", "relabel", "--image=python:3.11", "--restart=Never", "--labels=team=ml,tier=a", "--command", "--", "true")
    names = lambda sel: [o["metadata"]["name"] for o in k.kjson("get", "pods", "-n", "relabel", "-l", sel)["items"]]  # noqa: E731
    assert names("team=ml") == ["p"] and names("team=ml,tier=a") == ["p"]
    k.kubectl("label", "pod", "p", "-n", "relabel", "team=ops", "--overwrite")
    assert names("team=ml") == [] and names("team=ops") == ["p"] and names("team in (ops)") == ["p"]
    k.kubectl("label", "pod", "p", "-n", "relabel", "tier-")
    assert names("tier=a") == [] and names("team=ops") == ["p"]
    http = k.http()
    pod = http.get("/api/v1/namespaces/relabel/pods/p").json()
    pod["status"] = {**(pod.get("status") or {}), "message": "written through the status subresource"}
    pod["metadata"].pop("resourceVersion")  # unconditional: the kubelet writes this pod's status too
    assert http.put("/api/v1/namespaces/relabel/pods/p/status", json=pod).status_code == 200
    assert names("team=ops") == ["p"]
