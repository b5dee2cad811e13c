"""StatefulSets (ordinal names, OrderedReady start and stop, claims from volumeClaimTemplates, partitioned
rolling updates), DaemonSets (a Pod per eligible Node) and ReplicationControllers, through kubectl."""

from __future__ import annotations

import json

from conftest import wait_for


def _pods(k, ns: str, sel: str) -> list[dict]:
    return [p for p in k.kjson("get", "pods", "-n", ns, "-l", sel)["items"] if not p["metadata"].get("deletionTimestamp")]


def _sts(ns: str, replicas: int, image: str = "busybox", policy: str = "OrderedReady") -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
        "spec": {
            "replicas": replicas, "serviceName": "db", "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{
                "name": "c", "image": image, "command": ["sh", "-c", "echo $HOSTNAME > /data/me; sleep 3600"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}],
        },
    }


def test_statefulset_ordered_names_claims_and_partitioned_update(shared_ketch):
    k = shared_ketch
    ns = "sts"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-f", "-", input=json.dumps(_sts(ns, 3)))
    out = k.kubectl("rollout", "status", "statefulset/db", "-n", ns, "--timeout=90s").stdout
    assert "roll out complete: 3 new pods have been updated" in out  # partition defaults to 0, as in Kubernetes
    pods = sorted(_pods(k, ns, "app=db"), key=lambda p: p["metadata"]["creationTimestamp"] + p["metadata"]["name"])
    assert [p["metadata"]["name"] for p in pods] == ["db-0", "db-1", "db-2"]
    # OrderedReady: each Pod was created only after the one before it was Ready
    for prev, nxt in zip(pods, pods[1:], strict=False):
        ready_at = next(c["lastTransitionTime"] for c in prev["status"]["conditions"] if c["type"] == "Ready")
        assert nxt["metadata"]["creationTimestamp"] >= ready_at
    p0 = pods[0]
    assert p0["spec"]["hostname"] == "db-0" and p0["spec"]["subdomain"] == "db"
    assert p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"
    assert p0["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "0"
    claims = {c["metadata"]["name"]: c for c in k.kjson("get", "pvc", "-n", ns)["items"]}
    assert set(claims) == {"data-db-0", "data-db-1", "data-db-2"}
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}} in p0["spec"]["volumes"]
    sts = k.kjson("get", "sts", "db", "-n", ns)
    st = sts["status"]
    assert st["readyReplicas"] == 3 and st["currentRevision"] == st["updateRevision"] and st["updatedReplicas"] == 3
    revs = k.kjson("get", "controllerrevisions", "-n", ns)["items"]
    assert [r["metadata"]["name"] for r in revs] == [st["updateRevision"]] and revs[0]["revision"] == 1
    # a partitioned rolling update only replaces ordinals >= partition, highest first
    k.kubectl("patch", "sts", "db", "-n", ns, "-p", json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}}))
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in _pods(k, ns, "app=db")}
    k.kubectl("set", "image", "sts/db", "c=busybox:2", "-n", ns)
    out = k.kubectl("rollout", "status", "sts/db", "-n", ns, "--timeout=90s").stdout
    assert "partitioned roll out complete: 2 new pods have been updated" in out
    now = {p["metadata"]["name"]: p for p in _pods(k, ns, "app=db")}
    assert now["db-0"]["metadata"]["uid"] == uids["db-0"] and now["db-0"]["spec"]["containers"][0]["image"] == "busybox"
    for n in ("db-1", "db-2"):
        assert now[n]["metadata"]["uid"] != uids[n] and now[n]["spec"]["containers"][0]["image"] == "busybox:2"
    assert now["db-2"]["metadata"]["creationTimestamp"] <= now["db-1"]["metadata"]["creationTimestamp"]
    st = k.kjson("get", "sts", "db", "-n", ns)["status"]
    assert st["currentRevision"] != st["updateRevision"] and st["updatedReplicas"] == 2 and st["currentReplicas"] == 1
    # partition 0 finishes the update; the set's revision moves on
    k.kubectl("patch", "sts", "db", "-n", ns, "-p", json.dumps({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}))
    assert "roll out complete: 3 new pods" in k.kubectl("rollout", "status", "sts/db", "-n", ns, "--timeout=90s").stdout
    wait_for(lambda: (s := k.kjson("get", "sts", "db", "-n", ns)["status"])["currentRevision"] == s["updateRevision"], 20, 0.2, "current revision")
    # scale down: highest ordinals go, their claims stay (Retain)
    k.kubectl("scale", "sts/db", "--replicas=1", "-n", ns)
    wait_for(lambda: [p["metadata"]["name"] for p in _pods(k, ns, "app=db")] == ["db-0"], 60, 0.3, "scaled to db-0")
    assert {c["metadata"]["name"] for c in k.kjson("get", "pvc", "-n", ns)["items"]} == set(claims)
    # the volume survives its Pod: db-1 comes back to the same claim, with what db-1 wrote there
    k.kubectl("scale", "sts/db", "--replicas=2", "-n", ns)
    k.kubectl("rollout", "status", "sts/db", "-n", ns, "--timeout=60s")
    r = k.kubectl("exec", "db-1", "-n", ns, "--", "cat", "/data/me")
    assert r.stdout.strip() == "db-1"


def test_statefulset_parallel_and_kubectl_columns(shared_ketch):
    k = shared_ketch
    ns = "sts-par"
    k.kubectl("create", "namespace", ns)
    k.kubectl("apply", "-f", "-", input=json.dumps(_sts(ns, 3, policy="Parallel")))
    k.kubectl("rollout", "status", "statefulset/db", "-n", ns, "--timeout=90s")
    assert "3/3" in k.kubectl("get", "sts", "db", "-n", ns).stdout
    bad = _sts(ns, 3)
    bad["spec"]["podManagementPolicy"] = "OrderedReady"
    r = k.kubectl("apply", "-f", "-", input=json.dumps(bad), check=False)
    assert r.returncode != 0 and "Forbidden" in r.stderr
    k.kubectl("delete", "sts", "db", "-n", ns)
    wait_for(lambda: not k.kjson("get", "pods", "-n", ns)["items"], 60, 0.3, "pods gone with the set")


def test_daemonset_one_pod_per_eligible_node(shared_ketch):
    k = shared_ketch
    ns = "ds"
    k.kubectl("create", "namespace", ns)
    # A second Node with no kubelet behind it: the DaemonSet still binds a Pod to it.
    k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "far-node", "labels": {"zone": "b"}}}))
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": ns},
          "spec": {"selector": {"matchLabels": {"app": "agent"}},
                   "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}}}
    k.kubectl("apply", "-f", "-", input=json.dumps(ds))
    nodes = {n["metadata"]["name"] for n in k.kjson("get", "nodes")["items"]}
    assert len(nodes) == 2
    wait_for(lambda: {p["spec"]["nodeName"] for p in _pods(k, ns, "app=agent")} == nodes, 30, 0.2, "a pod per node")
    st = wait_for(lambda: (s := k.kjson("get", "ds", "agent", "-n", ns)["status"]).get("numberReady") == 1 and s, 30, 0.2, "local pod ready")
    assert st["desiredNumberScheduled"] == 2 and st["currentNumberScheduled"] == 2 and st["numberMisscheduled"] == 0
    # relabelling the node out of the selector removes its Pod
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    k.kubectl("label", "node", "far-node", "kubernetes.io/os=plan9")
    k.kubectl("apply", "-f", "-", input=json.dumps(ds))
    local = next(iter(nodes - {"far-node"}))
    wait_for(lambda: [p["spec"]["nodeName"] for p in _pods(k, ns, "app=agent")] == [local], 30, 0.2, "only the local node")
    out = k.kubectl("rollout", "status", "ds/agent", "-n", ns, "--timeout=60s").stdout
    assert "successfully rolled out" in out
    st = k.kjson("get", "ds", "agent", "-n", ns)["status"]
    assert st["desiredNumberScheduled"] == 1 and st["updatedNumberScheduled"] == 1 and st["numberAvailable"] == 1
    k.kubectl("delete", "node", "far-node")


def test_replication_controller(shared_ketch):
    k = shared_ketch
    ns = "rc"
    k.kubectl("create", "namespace", ns)
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "old", "namespace": ns},
          "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "old"}}, "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}}}
    k.kubectl("apply", "-f", "-", input=json.dumps(rc))
    got = k.kjson("get", "rc", "old", "-n", ns)
    assert got["spec"]["selector"] == {"app": "old"}  # defaulted from the template's labels
    wait_for(lambda: k.kjson("get", "rc", "old", "-n", ns)["status"].get("readyReplicas") == 2, 30, 0.2, "2 ready")
    k.kubectl("scale", "rc/old", "--replicas=3", "-n", ns)
    wait_for(lambda: len(_pods(k, ns, "app=old")) == 3, 30, 0.2, "3 pods")
    assert "3" in k.kubectl("get", "rc", "old", "-n", ns).stdout.splitlines()[1]
