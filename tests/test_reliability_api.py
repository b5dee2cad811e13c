"""No single request can stall or crash the Kubernetes API, and every client error is a 4xx naming the
field: alias bombs, deep nesting, catastrophic CRD patterns, wrong types, bad query parameters and
oversized bodies (on every route) are each refused quickly, while /healthz keeps answering."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from conftest import wait_for

CM = "/api/v1/namespaces/{ns}/configmaps"


@pytest.fixture(scope="module")
def k(shared_ketch):
    return shared_ketch


def ns(k, name: str) -> str:
    with k.http() as h:
        r = h.post("/api/v1/namespaces", json={"metadata": {"name": name}})
        assert r.status_code in (201, 409), r.text
    return name


class HealthWatch:
    """Polls /healthz in a thread while a test runs; records the slowest answer."""

    def __init__(self, k) -> None:
        self.k, self.worst, self.errors, self._stop = k, 0.0, [], threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.k.http(timeout=10) as h:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    h.get("/healthz")
                except httpx.HTTPError as e:
                    self.errors.append(repr(e))
                self.worst = max(self.worst, time.perf_counter() - t0)
                time.sleep(0.02)

    def __enter__(self) -> HealthWatch:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(5)


def bomb(levels: int) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\n  annotations:\n    x: y\ndata:\n  " + "\n  ".join(lines) + "\n"


@pytest.mark.parametrize("ctype, method", [("application/apply-patch+yaml", "PATCH"), ("application/yaml", "POST")])
def test_yaml_alias_bomb_is_refused_fast(k, ctype, method):
    n = ns(k, "bomb")
    body = bomb(8)
    url = CM.format(ns=n) + ("/lol?fieldManager=t" if method == "PATCH" else "")
    with HealthWatch(k) as hw, k.http(timeout=20) as h:
        t0 = time.perf_counter()
        r = h.request(method, url, content=body, headers={"Content-Type": ctype})
        took = time.perf_counter() - t0
    assert r.status_code == 400, r.text[:500]
    assert r.json()["kind"] == "Status" and "aliases" in r.json()["message"]
    assert took < 2 and hw.worst < 1.0, (took, hw.worst)
    # a few honest aliases are still fine
    ok = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: aliased-{method.lower()}, labels: &l {{app: x}}, annotations: *l}}\n"
    with k.http() as h:
        assert h.post(CM.format(ns=n), content=ok, headers={"Content-Type": "application/yaml"}).status_code == 201


def test_deep_nesting_is_a_400_not_a_500(k):
    n = ns(k, "deep")
    deep = '{"metadata":{"name":"d"},"data":' + '{"a":' * 5000 + "1" + "}" * 5000 + "}"
    deep_list = '{"metadata":{"name":"d"},"x":' + "[" * 100000 + "]" * 100000 + "}"
    deep_yaml = "metadata: {name: d}\ndata: " + "[" * 3000 + "]" * 3000 + "\n"
    with k.http() as h:
        for body, ct in ((deep, "application/json"), (deep_list, "application/json"), (deep_yaml, "application/yaml")):
            r = h.post(CM.format(ns=n), content=body, headers={"Content-Type": ct})
            assert r.status_code == 400, r.text[:300]
            assert "nested" in r.json()["message"] or "unknown format" in r.json()["message"]
        r = h.patch(CM.format(ns=n) + "/d", content=deep, headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 400, r.text[:300]


@pytest.mark.parametrize("path, body, field", [
    ("/api/v1/namespaces/types/configmaps", {"metadata": {"name": "a", "labels": ["x"]}}, "metadata.labels"),
    ("/api/v1/namespaces/types/configmaps", {"metadata": {"name": 5}}, "metadata.name"),
    ("/api/v1/namespaces/types/configmaps", {"metadata": {"name": "a", "annotations": {"k": 1}}}, "metadata.annotations.k"),
    ("/api/v1/namespaces/types/configmaps", {"metadata": {"name": "a", "finalizers": "x"}}, "metadata.finalizers"),
    ("/api/v1/namespaces/types/configmaps", {"metadata": {"name": "a", "ownerReferences": [{"name": 1}]}}, "metadata.ownerReferences[0].name"),
    ("/api/v1/namespaces/types/pods", {"metadata": {"name": "p"}, "spec": {"containers": "abc"}}, "spec.containers"),
    ("/api/v1/namespaces/types/pods", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i", "ports": "80"}]}}, "spec.containers[0].ports"),
    ("/apis/batch/v1/namespaces/types/jobs", {"metadata": {"name": "j"}, "spec": {"template": []}}, "spec.template"),
    ("/apis/kubeflow.org/v1/namespaces/types/pytorchjobs", {"metadata": {"name": "pj"}, "spec": {"pytorchReplicaSpecs": "x"}}, "spec.pytorchReplicaSpecs"),
    ("/apis/serving.kserve.io/v1beta1/namespaces/types/inferenceservices", {"metadata": {"name": "is"}, "spec": {"predictor": []}}, "spec.predictor"),
])
def test_wrong_types_are_422_naming_the_field(k, path, body, field):
    ns(k, "types")
    with k.http() as h:
        r = h.post(path, json=body)
    assert r.status_code == 422, r.text[:500]
    st = r.json()
    assert st["reason"] == "Invalid"
    assert field in [c["field"] for c in st["details"]["causes"]], st


def test_non_finite_numbers_in_yaml_are_refused(k):
    n = ns(k, "finite")
    body = "metadata: {name: nf}\nspec:\n  activeDeadlineSeconds: .inf\n  template: {spec: {restartPolicy: Never, containers: [{name: a, image: b}]}}\n"
    with k.http() as h:
        r = h.post(f"/apis/batch/v1/namespaces/{n}/jobs", content=body, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == "spec.activeDeadlineSeconds"


@pytest.mark.parametrize("query, word", [
    ("watch=1&resourceVersion=abc", "resourceVersion"),
    ("resourceVersion=-1", "resourceVersion"),
    ("limit=abc", "limit"),
    ("watch=1&timeoutSeconds=soon", "timeoutSeconds"),
    ("fieldSelector=garbage", "field selector"),
    ("fieldSelector=spec.foo%3D1", "field label not supported"),
    ("watch=1&fieldSelector=spec.foo%3D1", "field label not supported"),
    ("labelSelector=a%20b%20c", "label selector"),
    ("watch=1&labelSelector=%21%21", "label selector"),
])
def test_bad_query_parameters_are_400_before_any_stream(k, query, word):
    n = ns(k, "query")
    with k.http(timeout=5) as h:
        r = h.get(CM.format(ns=n) + "?" + query)
    assert r.status_code == 400, (r.status_code, r.text[:300])
    assert word in r.json()["message"]


def test_supported_field_selectors_still_work(k):
    n = ns(k, "fields")
    with k.http() as h:
        h.post(CM.format(ns=n), json={"metadata": {"name": "one"}})
        assert [o["metadata"]["name"] for o in h.get(CM.format(ns=n), params={"fieldSelector": "metadata.name=one"}).json()["items"]] == ["one"]
        assert h.get(f"/api/v1/namespaces/{n}/pods", params={"fieldSelector": "status.phase=Running,spec.nodeName=x"}).status_code == 200
        assert h.get(f"/api/v1/namespaces/{n}/events", params={"fieldSelector": "involvedObject.name=one"}).status_code == 200


def test_bad_delete_options_are_400(k):
    n = ns(k, "delopts")
    with k.http() as h:
        h.post(CM.format(ns=n), json={"metadata": {"name": "d"}})
        for body in ([1], {"preconditions": "x"}, {"gracePeriodSeconds": "x"}, {"propagationPolicy": 3}):
            r = h.request("DELETE", CM.format(ns=n) + "/d", content=json.dumps(body), headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (body, r.text)
        assert h.delete(CM.format(ns=n) + "/d", params={"gracePeriodSeconds": "abc"}).status_code == 400


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.fuzz.ketch.dev"},
    "spec": {"group": "fuzz.ketch.dev", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {"type": "object", "properties": {
                     "v": {"type": "string", "pattern": "^(a+)+$"}}}}}}}]},
}


@pytest.mark.parametrize("bad, field", [
    ({"type": "banana"}, "properties[spec].properties[v].type"),
    ({"type": "string", "pattern": "(a)\\1"}, "properties[spec].properties[v].pattern"),
    ({"type": "string", "maxLength": "ten"}, "properties[spec].properties[v].maxLength"),
    ({"type": "array", "items": [{"type": "string"}]}, "properties[spec].properties[v].items"),
    ({"type": "object", "properties": []}, "properties[spec].properties[v].properties"),
])
def test_crd_schemas_must_be_structural(k, bad, field):
    crd = json.loads(json.dumps(CRD))
    crd["metadata"]["name"] = "things.fuzz.ketch.dev"
    crd["spec"]["names"] = {"kind": "Thing", "plural": "things"}
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["v"] = bad
    with k.http() as h:
        r = h.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert r.status_code == 422, r.text[:400]
    assert any(c["field"].endswith(field) for c in r.json()["details"]["causes"]), r.json()


def test_catastrophic_pattern_is_linear_time(k):
    n = ns(k, "regex")
    with k.http() as h:
        r = h.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD)
        assert r.status_code in (201, 409), r.text
        wait_for(lambda: h.get(f"/apis/fuzz.ketch.dev/v1/namespaces/{n}/widgets").status_code == 200, 10, what="CRD served")
        with HealthWatch(k) as hw:
            t0 = time.perf_counter()
            r = h.post(f"/apis/fuzz.ketch.dev/v1/namespaces/{n}/widgets", json={"metadata": {"name": "w"}, "spec": {"v": "a" * 64 + "b"}})
            took = time.perf_counter() - t0
        assert r.status_code == 422 and "should match" in r.text, r.text
        assert took < 1 and hw.worst < 0.5, (took, hw.worst)
        assert h.post(f"/apis/fuzz.ketch.dev/v1/namespaces/{n}/widgets", json={"metadata": {"name": "w"}, "spec": {"v": "aaaa"}}).status_code == 201


BIG = 80 * 1024 * 1024  # over every cap, the gateway's 64 MiB included


def raw_post(k, path: str, headers: dict[str, str], declared: int, send: int) -> tuple[int, float, bytes]:
    """Send a request that declares ``declared`` bytes but only offers ``send`` before waiting for the
    answer: a server that reads the body whole before refusing it would hang here."""
    s = socket.create_connection(("127.0.0.1", k.port), timeout=10)
    try:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{k.port}\r\nContent-Length: {declared}\r\n"
        head += "".join(f"{a}: {b}\r\n" for a, b in {**k.headers, **headers}.items()) + "\r\n"
        t0 = time.perf_counter()
        s.sendall(head.encode() + b"x" * send)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1]), time.perf_counter() - t0, data
    finally:
        s.close()


@pytest.mark.parametrize("path, ctype", [
    ("/api/v1/namespaces/default/configmaps", "application/json"),
    ("/api/model_registry/v1/registered_models", "application/json"),
    ("/apis/v2beta1/pipelines/upload", "multipart/form-data; boundary=x"),
    ("/apis/v2beta1/runs", "application/json"),
    ("/katib/v1/namespaces/default/trials/t/metrics", "application/json"),
    ("/serving/default/nothing/v1/models/m:predict", "application/json"),
])
def test_oversized_bodies_are_refused_before_they_are_read(k, path, ctype):
    code, took, data = raw_post(k, path, {"Content-Type": ctype}, BIG, 1024)
    assert code == 413, data[:300]
    assert took < 2
    assert b"RequestEntityTooLarge" in data or code == 413


def test_chunked_bodies_are_counted_as_they_stream(k):
    def gen():
        for _ in range(60):
            yield b"x" * (1024 * 1024)

    with k.http(timeout=30) as h:
        r = h.post("/api/model_registry/v1/registered_models", content=gen(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text[:300]
        assert r.json()["reason"] == "RequestEntityTooLarge"
        # and the registry's own cap of 3 MiB is not bypassed by a body under the declared limit
        r = h.post("/api/model_registry/v1/registered_models", json={"name": "x" * (4 * 1024 * 1024)})
        assert r.status_code == 413
        assert h.get("/healthz").status_code == 200


def test_null_metadata_is_no_metadata(k):
    """Found by the fuzz: ``metadata: null`` in a status PUT or a JSON patch was a 500."""
    n = ns(k, "nullmeta")
    with k.http() as h:
        assert h.post(f"/apis/batch/v1/namespaces/{n}/jobs", json={"metadata": {"name": "j"}, "spec": {"suspend": True, "template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "c", "image": "python"}]}}}}).status_code == 201
        r = h.put(f"/apis/batch/v1/namespaces/{n}/jobs/j/status", json={"metadata": None, "status": {}})
        assert r.status_code < 500, r.text
        r = h.patch(f"/apis/batch/v1/namespaces/{n}/jobs/j", content=json.dumps([{"op": "replace", "path": "/metadata", "value": None}]),
                    headers={"Content-Type": "application/json-patch+json"})
        assert 400 <= r.status_code < 500, r.text
        r = h.patch(f"/apis/batch/v1/namespaces/{n}/jobs/j", content=json.dumps([{"op": "replace", "path": "/metadata", "value": [1]}]),
                    headers={"Content-Type": "application/json-patch+json"})
        assert r.status_code == 422, r.text


def test_apply_patch_that_is_not_utf8_is_a_400(k):
    """Found by the fuzz: a server-side apply body of arbitrary bytes was a 500."""
    n = ns(k, "utf8")
    with k.http() as h:
        r = h.patch(CM.format(ns=n) + "/x", params={"fieldManager": "t"}, content=b"EK\xb7", headers={"Content-Type": "application/apply-patch+yaml"})
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("path", ["/apis/v2beta1/runs", "/apis/v2beta1/recurringruns", "/apis/v2beta1/experiments"])
def test_kfp_ids_of_the_wrong_type_are_a_4xx(k, path):
    """Found by the fuzz (after authorization landed): a KFP body whose experiment_id or namespace is not a
    string was a 500 from the authorization middleware's namespace lookup."""
    with k.http() as h:
        for body in ({"experiment_id": ["x"]}, {"experiment_id": {"a": 1}}, {"namespace": 5, "display_name": "e"}):
            r = h.post(path, json=body)
            assert 400 <= r.status_code < 500, (body, r.status_code, r.text)


def test_kfp_filters_and_archives_that_are_not_what_they_claim_are_400(k):
    """Found by the fuzz: a filter that is JSON but not an object, and a .zip that is not an archive, were 500."""
    with k.http() as h:
        for f in ("14", "[1]", '{"predicates": 3}', '{"predicates": [1]}'):
            r = h.get("/apis/v2beta1/pipelines", params={"filter": f})
            assert r.status_code == 400, (f, r.text)
        for name in ("p.zip", "p.tar.gz"):
            r = h.post("/apis/v2beta1/pipelines/upload", files={"uploadfile": (name, b"pipelineInfo: {name: p}\n")})
            assert r.status_code == 400 and "archive" in r.json()["error"], r.text
