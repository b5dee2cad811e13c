"""kubectl's everyday commands against a real ketch server: create (protobuf bodies), get in every output
format, describe with events, explain, wait, delete --wait, get -w, api-resources, get all."""

from __future__ import annotations

import json
import subprocess
import time

import yaml

from conftest import kubectl_bin


def _ns(k, name: str) -> str:
    k.kubectl("create", "namespace", name)
    return name


def _strip(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("status",)}


def test_create_service_and_job_protobuf_round_trip(shared_ketch):
    """kubectl create service/job send protobuf; what is stored matches kubectl's own JSON rendering."""
    k = shared_ketch
    ns = _ns(k, "kc-proto")
    cases = [
        ("service", ["create", "service", "nodeport", "web", "--tcp=80:8080", "--node-port=30080"], "svc", "web"),
        ("job", ["create", "job", "hello", "--image=busybox", "--", "echo", "hi", "there"], "job", "hello"),
        ("cm", ["create", "configmap", "cfg", "--from-literal=a=1", "--from-literal=b=two"], "cm", "cfg"),
        ("secret", ["create", "secret", "generic", "sec", "--from-literal=p=s3cret"], "secret", "sec"),
    ]
    for _, args, res, name in cases:
        want = json.loads(k.kubectl("-n", ns, "--dry-run=client", "-o", "json", *args).stdout)
        k.kubectl("-n", ns, *args)
        got = k.kjson("get", res, name, "-n", ns)
        assert got["metadata"].get("labels") == want["metadata"].get("labels")
        if res == "svc":
            assert got["spec"]["ports"] == want["spec"]["ports"]
            assert got["spec"]["selector"] == want["spec"]["selector"] and got["spec"]["type"] == "NodePort"
        elif res == "job":
            c_got, c_want = got["spec"]["template"]["spec"]["containers"][0], want["spec"]["template"]["spec"]["containers"][0]
            assert (c_got["name"], c_got["image"], c_got["command"]) == (c_want["name"], c_want["image"], ["echo", "hi", "there"])
            assert got["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        else:
            assert got["data"] == want["data"]


def test_get_output_formats(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "kc-get")
    k.kubectl("create", "configmap", "one", "-n", ns, "--from-literal=k=v")
    k.kubectl("label", "configmap", "one", "-n", ns, "tier=gold")
    r = k.kubectl("get", "cm", "-n", ns, "-l", "tier=gold", "-o", "custom-columns=NAME:.metadata.name,TIER:.metadata.labels.tier")
    assert r.stdout.split() == ["NAME", "TIER", "one", "gold"]
    assert k.kubectl("get", "cm", "one", "-n", ns, "-o", "jsonpath={.data.k}").stdout == "v"
    assert yaml.safe_load(k.kubectl("get", "cm", "one", "-n", ns, "-o", "yaml").stdout)["data"] == {"k": "v"}
    k.kubectl("create", "service", "clusterip", "svc", "-n", ns, "--tcp=80:8080")
    wide = k.kubectl("get", "svc", "-n", ns, "-o", "wide").stdout
    assert "SELECTOR" in wide.splitlines()[0] and "app=svc" in wide
    r = k.kubectl("get", "cm", "-n", ns, "-o", "name").stdout.split()
    assert "configmap/one" in r
    allr = k.kubectl("get", "all", "-n", ns).stdout
    assert "service/svc" in allr
    res = k.kubectl("api-resources").stdout
    for line in ("configmaps", "customresourcedefinitions", "jobs"):
        assert line in res
    assert "pods" in k.kubectl("api-resources", "--namespaced=true", "-o", "name").stdout


def test_describe_lists_events(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "kc-describe")
    cm = k.kjson("create", "configmap", "watched", "-n", ns, "--from-literal=x=1")
    ev = {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "watched.1"},
        "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap", "name": "watched", "namespace": ns, "uid": cm["metadata"]["uid"]},
        "reason": "Checked", "message": "looked at it carefully", "type": "Normal", "count": 1,
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z", "source": {"component": "tester"},
    }
    k.kubectl("create", "-n", ns, "-f", "-", input=json.dumps(ev))
    out = k.kubectl("describe", "configmap", "watched", "-n", ns).stdout
    assert "Events:" in out and "Checked" in out and "looked at it carefully" in out and "tester" in out
    assert "looked at it carefully" in k.kubectl("get", "events", "-n", ns).stdout


def test_explain_builtin_and_crd(shared_ketch):
    k = shared_ketch
    out = k.kubectl("explain", "pod.spec.containers.env").stdout
    assert "FIELD: env <[]EnvVar>" in out and "valueFrom" in out
    out = k.kubectl("explain", "job.spec.template.spec.restartPolicy").stdout
    assert "<string>" in out
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "models.kc.example.com"},
        "spec": {"group": "kc.example.com", "scope": "Namespaced", "names": {"plural": "models", "singular": "model", "kind": "Model"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "description": "What the model is.",
                                                               "properties": {"format": {"type": "string", "description": "Serialisation format."}}}}}}}]},
    }
    k.kubectl("apply", "-f", "-", input=json.dumps(crd))
    k.kubectl("wait", "--for=condition=Established", "crd/models.kc.example.com", "--timeout=20s")
    out = k.kubectl("explain", "model.spec").stdout
    assert "What the model is." in out and "format" in out and "Serialisation format." in out


def test_wait_variants_and_delete_wait(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "kc-wait")
    k.kubectl("create", "configmap", "w", "-n", ns, "--from-literal=state=old")

    def later(*args: str) -> subprocess.Popen:
        return subprocess.Popen([kubectl_bin(), "--kubeconfig", str(k.kubeconfig), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    waiter = later("wait", "-n", ns, "--for=jsonpath={.data.state}=new", "cm/w", "--timeout=30s")
    time.sleep(0.5)
    k.kubectl("patch", "cm", "w", "-n", ns, "-p", '{"data":{"state":"new"}}')
    out, err = waiter.communicate(timeout=40)
    assert waiter.returncode == 0, err
    assert "condition met" in out
    # A condition on a status subresource (a Job's conditions are set through /status).
    k.kubectl("create", "job", "j", "-n", ns, "--image=busybox")
    waiter = later("wait", "-n", ns, "--for=condition=Tested", "job/j", "--timeout=30s")
    time.sleep(0.5)
    k.kubectl("patch", "job", "j", "-n", ns, "--subresource=status", "--type=merge", "-p",
              json.dumps({"status": {"conditions": [{"type": "Tested", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
    out, err = waiter.communicate(timeout=40)
    assert waiter.returncode == 0, err
    # --for=delete, with a finalizer holding the object until removed.
    k.kubectl("patch", "cm", "w", "-n", ns, "-p", '{"metadata":{"finalizers":["test/hold"]}}')
    k.kubectl("delete", "cm", "w", "-n", ns, "--wait=false")
    waiter = later("wait", "-n", ns, "--for=delete", "cm/w", "--timeout=30s")
    time.sleep(0.5)
    assert waiter.poll() is None  # still held
    k.kubectl("patch", "cm", "w", "-n", ns, "--type=json", "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')
    out, err = waiter.communicate(timeout=40)
    assert waiter.returncode == 0, err
    # delete --wait returns once the object is gone.
    k.kubectl("create", "configmap", "x", "-n", ns)
    k.kubectl("delete", "cm", "x", "-n", ns, "--wait=true", "--timeout=20s")
    assert k.kubectl("get", "cm", "x", "-n", ns, check=False).returncode != 0
    # A timeout is an error that says what it waited for.
    r = k.kubectl("wait", "-n", ns, "--for=condition=Never", "job/j", "--timeout=1s", check=False)
    assert r.returncode != 0 and "timed out" in r.stderr


def test_get_watch(shared_ketch):
    k = shared_ketch
    ns = _ns(k, "kc-watch")
    k.kubectl("create", "configmap", "first", "-n", ns)
    p = subprocess.Popen([kubectl_bin(), "--kubeconfig", str(k.kubeconfig), "get", "cm", "-n", ns, "-w", "--request-timeout=8s"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    k.kubectl("create", "configmap", "second", "-n", ns)
    try:
        out, _ = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    assert "first" in out and "second" in out
