"""Bad input: each gets the right Status (code, reason, a message naming the field) as kubectl prints it,
and nothing partial is stored."""

from __future__ import annotations

import json


def _ns(k, name: str) -> str:
    k.kubectl("create", "namespace", name)
    return name


def _names(k, ns: str, res: str = "cm") -> set[str]:
    """What the test stored (every namespace also holds kube-root-ca.crt, as on Kubernetes)."""
    return {o["metadata"]["name"] for o in k.kjson("get", res, "-n", ns)["items"]} - {"kube-root-ca.crt"}


def _cm(name: str, **extra) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra})


def test_http_level_errors(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "err-http")
    base = f"/api/v1/namespaces/{ns}/configmaps"
    with k.http() as h:
        r = h.post(base, content=b'{"apiVersion": "v1", "kind": ', headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["reason"] == "BadRequest" and r.json()["kind"] == "Status"
        r = h.post(base, content=b"kind: [unclosed", headers={"Content-Type": "application/yaml"})
        assert r.status_code == 400 and "error decoding YAML" in r.json()["message"]
        big = _cm("big", data={"k": "x" * (4 * 1024 * 1024)})
        r = h.post(base, content=big.encode(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["reason"] == "RequestEntityTooLarge"
        r = h.post(base, content=_cm("wrong-kind").replace("ConfigMap", "Secret").encode(), headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "Secret" in r.json()["message"]
        r = h.post(base, content=json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "elsewhere"}}).encode(),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "does not match the namespace" in r.json()["message"]
        r = h.get("/api/v1/namespaces/err-http/widgets")
        assert r.status_code == 404 and r.json()["reason"] == "NotFound"
        r = h.get("/apis/nope.example.com/v1")
        assert r.status_code == 404
        r = h.get(base, params={"labelSelector": "a in (b"})
        assert r.status_code == 400
        r = h.post(base + "?fieldValidation=Sloppy", content=_cm("fv").encode(), headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "fieldValidation" in r.json()["message"]
        r = h.patch(base + "/nothere", content=b'{"data":{}}', headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 404
        r = h.post(base, content=_cm("pb").encode(), headers={"Content-Type": "application/cbor"})
        assert r.status_code == 415 and r.json()["reason"] == "UnsupportedMediaType"
    assert _names(k, ns) == set()  # nothing stored by any of the above


def test_kubectl_shows_field_errors(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "err-kubectl")
    r = k.kubectl("create", "-n", ns, "-f", "-", input=_cm("Bad_Name"), check=False)
    assert r.returncode != 0
    assert 'The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain' in r.stderr
    r = k.kubectl("create", "-n", ns, "-f", "-", input=_cm("typed", data={"k": 1}), check=False)
    assert r.returncode != 0 and "data.k" in r.stderr and "string" in r.stderr
    r = k.kubectl("create", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v9", "kind": "ConfigMap", "metadata": {"name": "v9"}}), check=False)
    assert r.returncode != 0 and 'no matches for kind "ConfigMap" in version "v9"' in r.stderr
    r = k.kubectl("create", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Gizmo", "metadata": {"name": "g"}}), check=False)
    assert r.returncode != 0 and 'no matches for kind "Gizmo" in version "v1"' in r.stderr
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
    r = k.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(pod), check=False)
    assert r.returncode != 0 and 'The Pod "p" is invalid: spec.containers[0].image: Required value' in r.stderr
    pod["spec"]["containers"][0].update(image="img", ports=[{"containerPort": "eighty"}])
    r = k.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(pod), check=False)
    assert r.returncode != 0 and "spec.containers[0].ports[0].containerPort" in r.stderr and "integer" in r.stderr
    # Quantities may be numbers in YAML even though they are strings on the wire.
    pod["spec"]["containers"][0].update(ports=[{"containerPort": 80}], resources={"limits": {"cpu": 1, "memory": "64Mi"}})
    k.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(pod))
    assert _names(k, ns, "pods") == {"p"}
    assert _names(k, ns) == set()


def test_field_validation_strict_warn_ignore(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "err-fv")
    body = _cm("s", data={"k": "v"}, bogus=1)
    r = k.kubectl("create", "-n", ns, "-f", "-", input=body, check=False)  # kubectl's default is Strict
    assert r.returncode != 0 and 'strict decoding error: unknown field "bogus"' in r.stderr
    assert "s" not in _names(k, ns)
    r = k.kubectl("create", "--validate=warn", "-n", ns, "-f", "-", input=body)
    assert 'Warning: unknown field "bogus"' in r.stderr
    obj = k.kjson("get", "cm", "s", "-n", ns)
    assert "bogus" not in obj and obj["data"] == {"k": "v"}
    r = k.kubectl("apply", "--validate=false", "-n", ns, "-f", "-", input=_cm("i", data={"k": "v"}, bogus=1))
    assert "Warning" not in r.stderr and "i" in _names(k, ns)
    # Nested unknown fields are named with their path.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"}, "spec": {"containers": [{"name": "c", "image": "i", "imagePolicy": "x"}]}}
    r = k.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(pod), check=False)
    assert r.returncode != 0 and 'unknown field "spec.containers[0].imagePolicy"' in r.stderr


def test_immutable_fields(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "err-immutable")
    k.kubectl("create", "secret", "generic", "s", "-n", ns, "--from-literal=a=b")
    r = k.kubectl("patch", "secret", "s", "-n", ns, "-p", '{"type":"Other"}', check=False)
    assert r.returncode != 0 and 'The Secret "s" is invalid: type: Invalid value: "Other": field is immutable' in r.stderr
    k.kubectl("create", "-n", ns, "-f", "-", input=_cm("frozen", data={"k": "v"}, immutable=True))
    r = k.kubectl("patch", "cm", "frozen", "-n", ns, "-p", '{"data":{"k":"w"}}', check=False)
    assert r.returncode != 0 and "data: Forbidden: field is immutable when `immutable` is set" in r.stderr
    assert k.kjson("get", "cm", "frozen", "-n", ns)["data"] == {"k": "v"}
    k.kubectl("create", "-n", ns, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a"}]}}))
    r = k.kubectl("patch", "pod", "p", "-n", ns, "-p", '{"spec":{"restartPolicy":"Never"}}', check=False)
    assert r.returncode != 0 and "spec: Forbidden: pod updates may not change fields" in r.stderr


def test_crd_schema_violations_name_paths(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "err-crd")
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "runs.err.example.com"},
        "spec": {"group": "err.example.com", "scope": "Namespaced", "names": {"plural": "runs", "singular": "run", "kind": "Run"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "required": ["steps"], "properties": {
                         "steps": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                             "name": {"type": "string"}, "retries": {"type": "integer", "maximum": 5}}}},
                         "mode": {"type": "string", "enum": ["fast", "slow"]}}}}}}}]},
    }
    k.kubectl("apply", "-f", "-", input=json.dumps(crd))
    k.kubectl("wait", "--for=condition=Established", "crd/runs.err.example.com", "--timeout=20s")
    bad = {"apiVersion": "err.example.com/v1", "kind": "Run", "metadata": {"name": "r"},
           "spec": {"steps": [{"name": "a", "retries": 9}, {"retries": 1}], "mode": "medium"}}
    r = k.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(bad), check=False)
    assert r.returncode != 0
    for frag in ("spec.steps[0].retries", "spec.steps[1].name: Required value", 'spec.mode: Unsupported value: "medium"'):
        assert frag in r.stderr, (frag, r.stderr)
    assert _names(k, ns, "runs") == set()
    r = k.kubectl("create", "-n", ns, "-f", "-", input=json.dumps({**bad, "spec": {"mode": "fast"}}), check=False)
    assert r.returncode != 0 and "spec.steps: Required value" in r.stderr
