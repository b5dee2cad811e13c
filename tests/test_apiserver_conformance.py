"""Small Kubernetes conformance points clients notice: booleans in query parameters as Go's ParseBool
reads them, Status bodies in kube-apiserver's field order, the request's verb in a 404, a Service's status
on create, what every namespace holds (the default ServiceAccount, kube-root-ca.crt), and the
coordination.k8s.io, policy/v1 and events.k8s.io kinds."""

from __future__ import annotations

import json

import pytest

from conftest import wait_for


def test_boolean_query_parameters_follow_go_parsebool(shared_ketch):
    k = shared_ketch
    k.kubectl("create", "namespace", "bools")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker", "namespace": "bools"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "python",
                    "command": ["sh", "-c", "echo first; sleep 1.5; echo second"]}]}}
    k.kubectl("apply", "-f", "-", input=json.dumps(pod))
    with k.http() as c:
        wait_for(lambda: "first" in c.get("/api/v1/namespaces/bools/pods/talker/log").text, 30, 0.1, "first line")
        # follow=True (what the kubernetes Python client 30 sends) keeps streaming until the container ends
        r = c.get("/api/v1/namespaces/bools/pods/talker/log", params={"follow": "True"})
        assert r.status_code == 200 and "second" in r.text, r.text
        for v in ("1", "t", "T", "TRUE", "true", "True"):
            with c.stream("GET", "/api/v1/namespaces/bools/configmaps", params={"watch": v, "timeoutSeconds": "1"}) as s:
                assert s.status_code == 200
                assert '"type":"ADDED"' in s.read().decode()  # a watch stream, not a list
        for v in ("0", "f", "F", "FALSE", "false", "False"):
            assert c.get("/api/v1/namespaces/bools/configmaps", params={"watch": v}).json()["kind"] == "ConfigMapList"
        bad = c.get("/api/v1/namespaces/bools/configmaps", params={"watch": "yes"})
        assert bad.status_code == 400 and "watch" in bad.json()["message"] and "ParseBool" in bad.json()["message"]
        assert c.get("/api/v1/namespaces/bools/pods/talker/log", params={"timestamps": "nope"}).status_code == 400
        ts = c.get("/api/v1/namespaces/bools/pods/talker/log", params={"timestamps": "T"}).text
        assert ts.split(" ", 1)[0].endswith("Z")  # each line stamped


def test_status_field_order_and_verbs(shared_ketch):
    with shared_ketch.http() as c:
        r = c.get("/api/v1/namespaces/default/configmaps/missing")
        assert r.status_code == 404
        assert list(json.loads(r.content)) == ["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"]
        r = c.post("/apis/apps/v1/namespaces/default/nothings", json={})
        assert r.status_code == 404 and "(post nothings.apps)" in r.json()["message"], r.text
        assert "(delete widgets)" in c.delete("/api/v1/namespaces/default/widgets/x").json()["message"]


def test_service_status_on_create(shared_ketch):
    with shared_ketch.http() as c:
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s1"}, "spec": {"ports": [{"port": 80}]}}
        r = c.post("/api/v1/namespaces/default/services", json=svc)
        assert r.status_code == 201, r.text
        assert r.json()["status"] == {"loadBalancer": {}}


def test_every_namespace_gets_default_serviceaccount_and_root_ca(shared_ketch):
    k = shared_ketch
    for ns in ("default", "kube-system"):
        wait_for(lambda ns=ns: k.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0, 20, 0.1, f"sa in {ns}")
    k.kubectl("create", "namespace", "fresh")
    wait_for(lambda: k.kubectl("get", "serviceaccount", "default", "-n", "fresh", check=False).returncode == 0, 20, 0.1, "default sa")
    wait_for(lambda: k.kubectl("get", "cm", "kube-root-ca.crt", "-n", "fresh", check=False).returncode == 0, 20, 0.1, "root ca")
    assert "ca.crt" in k.kjson("get", "cm", "kube-root-ca.crt", "-n", "fresh")["data"]
    uid = k.kjson("get", "sa", "default", "-n", "fresh")["metadata"]["uid"]
    k.kubectl("delete", "sa", "default", "-n", "fresh")
    wait_for(lambda: (r := k.kubectl("get", "sa", "default", "-n", "fresh", "-o", "json", check=False)).returncode == 0
             and json.loads(r.stdout)["metadata"]["uid"] != uid, 20, 0.1, "default sa recreated")
    k.kubectl("delete", "namespace", "fresh", "--timeout=30s")


def test_lease_pdb_and_structured_events(shared_ketch):
    k = shared_ketch
    k.kubectl("create", "namespace", "coord")
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader", "namespace": "coord"},
             "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15, "acquireTime": "2026-01-01T00:00:00.000000Z"}}
    k.kubectl("apply", "-f", "-", input=json.dumps(lease))
    assert "me" in k.kubectl("get", "lease", "leader", "-n", "coord").stdout
    lease["spec"]["leaseDurationSeconds"] = 0
    bad = k.kubectl("apply", "-f", "-", input=json.dumps(lease), check=False)
    assert bad.returncode != 0 and "spec.leaseDurationSeconds" in bad.stderr
    # kubectl create pdb speaks protobuf
    k.kubectl("create", "pdb", "web", "--selector=app=web", "--min-available=1", "-n", "coord")
    pdb = k.kjson("get", "pdb", "web", "-n", "coord")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    both = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "both", "namespace": "coord"},
            "spec": {"minAvailable": 1, "maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
    bad = k.kubectl("apply", "-f", "-", input=json.dumps(both), check=False)
    assert bad.returncode != 0 and "cannot be both set" in bad.stderr
    ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1", "namespace": "coord"},
          "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Normal", "reason": "Tested", "action": "Test", "note": "hello",
          "reportingController": "tests", "reportingInstance": "tests-1", "regarding": {"kind": "Lease", "name": "leader", "namespace": "coord"}}
    k.kubectl("apply", "-f", "-", input=json.dumps(ev))
    out = k.kubectl("get", "events.events.k8s.io", "-n", "coord").stdout
    assert "Tested" in out and "hello" in out and "lease/leader" in out
    ev["type"] = "Odd"
    ev["metadata"]["name"] = "e2"
    bad = k.kubectl("apply", "-f", "-", input=json.dumps(ev), check=False)
    assert bad.returncode != 0 and "type" in bad.stderr


@pytest.mark.parametrize("path", ["/apis/coordination.k8s.io/v1", "/apis/policy/v1", "/apis/events.k8s.io/v1", "/apis/apps/v1"])
def test_groups_are_discoverable(shared_ketch, path):
    with shared_ketch.http() as c:
        r = c.get(path)
        assert r.status_code == 200 and r.json()["resources"], r.text
