"""The official `kubernetes` Python client against a real ketch server: CRUD, selectors, watch, patch,
delete with propagation, and the custom objects API."""

from __future__ import annotations

import threading

import pytest

from conftest import wait_for

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402


@pytest.fixture(scope="module")
def api_client(shared_ketch):
    return config.new_client_from_config(config_file=str(shared_ketch.kubeconfig))


def _ns(api_client, name: str) -> str:
    client.CoreV1Api(api_client).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def test_configmap_crud_and_selectors(api_client):
    v1 = client.CoreV1Api(api_client)
    ns = _ns(api_client, "py-crud")
    for i in range(5):
        v1.create_namespaced_config_map(ns, client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"c{i}", labels={"parity": "even" if i % 2 == 0 else "odd", "i": str(i)}),
            data={"i": str(i)},
        ))
    cm = v1.read_namespaced_config_map("c1", ns)
    assert cm.data == {"i": "1"} and cm.metadata.uid and cm.metadata.creation_timestamp is not None
    evens = v1.list_namespaced_config_map(ns, label_selector="parity=even")
    assert sorted(c.metadata.name for c in evens.items) == ["c0", "c2", "c4"]
    sel = v1.list_namespaced_config_map(ns, label_selector="i in (1,3),parity!=even")
    assert sorted(c.metadata.name for c in sel.items) == ["c1", "c3"]
    byname = v1.list_namespaced_config_map(ns, field_selector="metadata.name=c3")
    assert [c.metadata.name for c in byname.items] == ["c3"]
    page = v1.list_namespaced_config_map(ns, limit=2)
    assert len(page.items) == 2 and page.metadata._continue
    rest = v1.list_namespaced_config_map(ns, limit=10, _continue=page.metadata._continue)
    assert {c.metadata.name for c in page.items + rest.items} >= {f"c{i}" for i in range(5)}
    # Replace with a stale resourceVersion: 409.
    cm.data = {"i": "one"}
    v1.replace_namespaced_config_map("c1", ns, cm)
    cm.data = {"i": "uno"}
    with pytest.raises(ApiException) as ei:
        v1.replace_namespaced_config_map("c1", ns, cm)
    assert ei.value.status == 409
    # Patches: merge (dict body), strategic, JSON patch.
    v1.patch_namespaced_config_map("c2", ns, {"data": {"extra": "x"}})
    assert v1.read_namespaced_config_map("c2", ns).data == {"i": "2", "extra": "x"}
    v1.patch_namespaced_config_map("c2", ns, [{"op": "remove", "path": "/data/extra"}])
    assert v1.read_namespaced_config_map("c2", ns).data == {"i": "2"}
    v1.delete_namespaced_config_map("c0", ns)
    with pytest.raises(ApiException) as ei:
        v1.read_namespaced_config_map("c0", ns)
    assert ei.value.status == 404
    v1.delete_collection_namespaced_config_map(ns, label_selector="parity=odd")
    left = {c.metadata.name for c in v1.list_namespaced_config_map(ns).items}
    assert "c1" not in left and "c3" not in left and {"c2", "c4"} <= left


def test_watch_stream(api_client):
    v1 = client.CoreV1Api(api_client)
    ns = _ns(api_client, "py-watch")
    # every new namespace gets its kube-root-ca.crt ConfigMap from a controller, a moment later: the list the
    # watch starts from is taken once it is there, so the watch sees only what this test does
    wait_for(lambda: any(c.metadata.name == "kube-root-ca.crt" for c in v1.list_namespaced_config_map(ns).items), 10, 0.1, "kube-root-ca.crt")
    rv = v1.list_namespaced_config_map(ns).metadata.resource_version
    seen: list[tuple[str, str]] = []
    w = watch.Watch()

    def consume():
        for ev in w.stream(v1.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=20):
            seen.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=consume)
    t.start()
    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w"), data={"a": "1"}))
    v1.patch_namespaced_config_map("w", ns, {"data": {"a": "2"}})
    v1.delete_namespaced_config_map("w", ns)
    t.join(30)
    assert not t.is_alive()
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_pod_status_and_field_selector(api_client):
    v1 = client.CoreV1Api(api_client)
    ns = _ns(api_client, "py-pods")
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="p"),
        spec=client.V1PodSpec(node_name="nowhere", containers=[client.V1Container(name="c", image="busybox", env=[client.V1EnvVar(name="A", value="1")])]),
    )
    created = v1.create_namespaced_pod(ns, pod)
    assert created.spec.containers[0].env[0].name == "A"
    v1.patch_namespaced_pod_status("p", ns, {"status": {"phase": "Running"}})
    running = v1.list_namespaced_pod(ns, field_selector="status.phase=Running")
    assert [p.metadata.name for p in running.items] == ["p"]
    assert v1.list_namespaced_pod(ns, field_selector="status.phase=Pending").items == []
    got = v1.read_namespaced_pod_status("p", ns)
    assert got.status.phase == "Running"


def test_delete_with_propagation(api_client):
    v1 = client.CoreV1Api(api_client)
    ns = _ns(api_client, "py-gc")
    owner = v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    for name in ("child1", "child2"):
        v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, owner_references=[ref])))
    v1.delete_namespaced_config_map("owner", ns, body=client.V1DeleteOptions(propagation_policy="Foreground"))
    wait_for(lambda: not {c.metadata.name for c in v1.list_namespaced_config_map(ns).items} & {"owner", "child1", "child2"}, 20, what="foreground deletion")
    owner = v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner2")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner2", uid=owner.metadata.uid)
    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kept", owner_references=[ref])))
    v1.delete_namespaced_config_map("owner2", ns, propagation_policy="Orphan")
    wait_for(lambda: "owner2" not in {c.metadata.name for c in v1.list_namespaced_config_map(ns).items}, 20, what="orphaning delete")
    kept = v1.read_namespaced_config_map("kept", ns)
    assert not kept.metadata.owner_references


def test_custom_objects_api(api_client, shared_ketch):
    ext = client.ApiextensionsV1Api(api_client)
    ns = _ns(api_client, "py-cr")
    ext.create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "trainers.py.example.com"},
        "spec": {
            "group": "py.example.com", "scope": "Namespaced",
            "names": {"plural": "trainers", "singular": "trainer", "kind": "Trainer"},
            "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                              "spec": {"type": "object", "required": ["epochs"], "properties": {"epochs": {"type": "integer", "minimum": 1}}},
                              "status": {"type": "object", "properties": {"state": {"type": "string"}}}}}}}],
        },
    })
    wait_for(lambda: any(c.type == "Established" and c.status == "True" for c in (ext.read_custom_resource_definition("trainers.py.example.com").status.conditions or [])), 20, what="CRD established")
    co = client.CustomObjectsApi(api_client)
    body = {"apiVersion": "py.example.com/v1", "kind": "Trainer", "metadata": {"name": "t", "labels": {"team": "a"}}, "spec": {"epochs": 3}}
    co.create_namespaced_custom_object("py.example.com", "v1", ns, "trainers", body)
    got = co.get_namespaced_custom_object("py.example.com", "v1", ns, "trainers", "t")
    assert got["spec"] == {"epochs": 3} and got["metadata"]["generation"] == 1
    with pytest.raises(ApiException) as ei:
        co.create_namespaced_custom_object("py.example.com", "v1", ns, "trainers", {**body, "metadata": {"name": "bad"}, "spec": {"epochs": 0}})
    assert ei.value.status == 422 and "spec.epochs" in ei.value.body
    co.patch_namespaced_custom_object("py.example.com", "v1", ns, "trainers", "t", {"spec": {"epochs": 5}})
    got = co.get_namespaced_custom_object("py.example.com", "v1", ns, "trainers", "t")
    assert got["spec"]["epochs"] == 5 and got["metadata"]["generation"] == 2
    co.patch_namespaced_custom_object_status("py.example.com", "v1", ns, "trainers", "t", {"status": {"state": "Running"}})
    got = co.get_namespaced_custom_object("py.example.com", "v1", ns, "trainers", "t")
    assert got["status"] == {"state": "Running"} and got["metadata"]["generation"] == 2
    lst = co.list_namespaced_custom_object("py.example.com", "v1", ns, "trainers", label_selector="team=a")
    assert [o["metadata"]["name"] for o in lst["items"]] == ["t"]
    allns = co.list_cluster_custom_object("py.example.com", "v1", "trainers")
    assert any(o["metadata"]["name"] == "t" for o in allns["items"])
    events = []
    w = watch.Watch()
    for ev in w.stream(co.list_namespaced_custom_object, "py.example.com", "v1", ns, "trainers", timeout_seconds=5):
        events.append((ev["type"], ev["object"]["metadata"]["name"]))
        w.stop()
    assert events == [("ADDED", "t")]
    co.delete_namespaced_custom_object("py.example.com", "v1", ns, "trainers", "t")
    with pytest.raises(ApiException) as ei:
        co.get_namespaced_custom_object("py.example.com", "v1", ns, "trainers", "t")
    assert ei.value.status == 404


def test_watch_too_old_resource_version_raises_410(tmp_path):
    """After compaction the client gets 410 Gone (and re-lists), as from etcd."""
    from conftest import make_ketch

    k = make_ketch(tmp_path, env={"KETCH_WATCH_HISTORY": "5"}).start()
    try:
        api = config.new_client_from_config(config_file=str(k.kubeconfig))
        v1 = client.CoreV1Api(api)
        first_rv = v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c0"))).metadata.resource_version
        for i in range(1, 20):  # with a history of 5, the change log is compacted every 5 writes
            v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{i}")))
        with pytest.raises(ApiException) as ei:
            for _ in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=first_rv, timeout_seconds=5):
                pass
        assert ei.value.status == 410
        # Re-listing gives a current resourceVersion to watch from.
        rv = v1.list_namespaced_config_map("default").metadata.resource_version
        seen = []
        w = watch.Watch()
        t = threading.Thread(target=lambda: [seen.append(e["object"].metadata.name) or w.stop() for e in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=10)])
        t.start()
        v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="fresh")))
        t.join(15)
        assert seen == ["fresh"]
    finally:
        k.stop()
