"""Multi-user Kubeflow on one real ketch: users from ``ketch user add``, RBAC with Kubernetes' semantics,
Profiles, quota, and every API checked through real clients (kubectl with --token and with each user's
kubeconfig, the ``kubernetes`` client, ``kfp.Client``, plain HTTP to the gateway, the notebook proxy, Katib's
push endpoint and the model registry).

alice owns Profile ``alice``; bob owns ``bob`` and is a contributor (edit) to ``alice``; carol has view on
``alice``; dave has nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import expect

from conftest import SRC, make_ketch, wait_for


def add_user(k, name: str, *groups: str) -> tuple[str, Path]:
    path = k.home / f"{name}.kubeconfig"
    args = [sys.executable, "-m", "ketch", "user", "add", name, "--server", k.url, "--kubeconfig", str(path), "-n", name]
    for g in groups:
        args += ["--group", g]
    env = {"KETCH_HOME": str(k.home), "PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    subprocess.run(args, check=True, capture_output=True, env=env)
    cfg = yaml.safe_load(path.read_text())
    return cfg["users"][0]["user"]["token"], path


def contributor(ns: str, user: str, role: str) -> dict:
    """A contributor as KFAM writes one: RoleBinding user-<escaped>-clusterrole-<role>, annotations user/role."""
    esc = user.replace("@", "-").replace(".", "-").lower()
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"user-{esc}-clusterrole-{role}", "namespace": ns, "annotations": {"user": user, "role": role}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"kubeflow-{role}"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]}


def profile(name: str, owner: str, quota: dict | None = None) -> dict:
    spec: dict = {"owner": {"kind": "User", "name": owner}}
    if quota:
        spec["resourceQuotaSpec"] = {"hard": quota}
    return {"apiVersion": "kubeflow.org/v1", "kind": "Profile", "metadata": {"name": name}, "spec": spec}


class World:
    def __init__(self, k) -> None:
        self.k = k
        self.tokens: dict[str, str] = {}
        self.configs: dict[str, Path] = {}

    def kubectl(self, user: str, *args: str, check: bool = False, input: str | None = None) -> subprocess.CompletedProcess:
        """kubectl as ``user`` with ``--token`` over the admin's kubeconfig (server and CA from it)."""
        return self.k.kubectl("--token", self.tokens[user], *args, check=check, input=input)

    def kube(self, user: str):
        from kubernetes import client, config

        return client.CoreV1Api(config.new_client_from_config(config_file=str(self.configs[user])))

    def http(self, user: str | None) -> httpx.Client:
        h = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        return httpx.Client(base_url=self.k.url, headers=h, timeout=30)

    def kfp(self, user: str, namespace: str | None = None):
        """kfp.Client as ``user`` (its token), optionally with a default namespace as a Profile's user sets."""
        import kfp

        return kfp.Client(host=self.k.url, existing_token=self.tokens[user], **({"namespace": namespace} if namespace else {}))


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    k = make_ketch(tmp_path_factory.mktemp("multiuser")).start()
    try:
        world = World(k)
        for u in ("alice", "bob", "carol", "dave"):
            world.tokens[u], world.configs[u] = add_user(k, u)
        k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            profile("alice", "alice", {"pods": "4"}), profile("bob", "bob", {"requests.cpu": "1"})]}))
        wait_for(lambda: k.kubectl("get", "rolebinding", "namespaceAdmin", "-n", "alice", check=False).returncode == 0
                 and k.kubectl("get", "rolebinding", "namespaceAdmin", "-n", "bob", check=False).returncode == 0, what="profiles")
        k.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            contributor("alice", "bob", "edit"), contributor("alice", "carol", "view")]}))
        yield world
    finally:
        k.stop()


def test_profile_makes_namespace_bindings_accounts_and_quota(w):
    k = w.k
    ns = k.kjson("get", "namespace", "alice")
    assert ns["metadata"]["annotations"]["owner"] == "alice"
    assert ns["metadata"]["ownerReferences"][0]["kind"] == "Profile"
    rb = k.kjson("get", "rolebinding", "namespaceAdmin", "-n", "alice")
    assert rb["roleRef"]["name"] == "kubeflow-admin" and rb["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
    assert rb["metadata"]["annotations"] == {"user": "alice", "role": "admin"}
    for sa, role in (("default-editor", "kubeflow-edit"), ("default-viewer", "kubeflow-view")):
        k.kjson("get", "serviceaccount", sa, "-n", "alice")
        assert k.kjson("get", "rolebinding", sa, "-n", "alice")["roleRef"]["name"] == role
    q = wait_for(lambda: (k.kjson("get", "resourcequota", "kf-resource-quota", "-n", "bob").get("status") or {}).get("used") and
                 k.kjson("get", "resourcequota", "kf-resource-quota", "-n", "bob"), what="quota status")
    assert q["spec"]["hard"] == {"requests.cpu": "1"} and q["status"] == {"hard": {"requests.cpu": "1"}, "used": {"requests.cpu": "0"}}
    assert k.kjson("get", "profile", "alice")["status"]["conditions"][0]["status"] == "True"


def test_quota_refuses_a_pod_over_it_with_kubernetes_message(w):
    def pod(name: str, cpu: str | None) -> str:
        c: dict = {"name": "c", "image": "python:3.11", "command": [sys.executable, "-c", "import time; time.sleep(60)"]}
        if cpu:
            c["resources"] = {"requests": {"cpu": cpu}}
        return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "bob"},
                           "spec": {"restartPolicy": "Never", "containers": [c]}})
    r = w.kubectl("bob", "create", "-f", "-", input=pod("big", "2"))
    assert r.returncode != 0
    assert 'pods "big" is forbidden: exceeded quota: kf-resource-quota, requested: requests.cpu=2, used: requests.cpu=0, ' \
           "limited: requests.cpu=1" in r.stderr, r.stderr
    r = w.kubectl("bob", "create", "-f", "-", input=pod("bare", None))
    assert r.returncode != 0 and "failed quota: kf-resource-quota: must specify requests.cpu" in r.stderr, r.stderr
    assert w.k.kubectl("get", "pod", "big", "-n", "bob", check=False).returncode != 0  # nothing half-written
    # a LimitRange's defaults fill the request in, so the same Pod is admitted and counted
    lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": "bob"},
          "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "250m"}}]}}
    r = w.kubectl("bob", "apply", "-f", "-", input=json.dumps(lr))  # the namespace's owner reads limits, the admin sets them
    assert r.returncode != 0 and 'cannot create resource "limitranges"' in r.stderr
    w.k.kubectl("apply", "-f", "-", input=json.dumps(lr))
    assert w.kubectl("bob", "create", "-f", "-", input=pod("bare", None)).returncode == 0
    assert w.k.kjson("get", "pod", "bare", "-n", "bob")["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "250m"}
    wait_for(lambda: w.k.kjson("get", "resourcequota", "kf-resource-quota", "-n", "bob")["status"]["used"] == {"requests.cpu": "250m"},
             what="quota used")
    r = w.kubectl("bob", "create", "-f", "-", input=pod("big2", "800m"))
    assert "exceeded quota: kf-resource-quota, requested: requests.cpu=800m, used: requests.cpu=250m, limited: requests.cpu=1" in r.stderr, r.stderr
    w.k.kubectl("delete", "pod", "bare", "-n", "bob", "--wait=false")
    w.k.kubectl("delete", "limitrange", "defaults", "-n", "bob")


def test_forbidden_messages_are_kube_apiservers(w):
    r = w.kubectl("carol", "get", "pods", "-n", "bob")
    assert 'Error from server (Forbidden): pods is forbidden: User "carol" cannot list resource "pods" in API group "" ' \
           'in the namespace "bob"' in r.stderr, r.stderr
    r = w.kubectl("carol", "get", "secret", "s1", "-n", "alice")
    assert 'secrets "s1" is forbidden: User "carol" cannot get resource "secrets" in API group "" in the namespace "alice"' in r.stderr
    r = w.kubectl("bob", "get", "clusterroles")
    assert 'clusterroles.rbac.authorization.k8s.io is forbidden: User "bob" cannot list resource "clusterroles" in API group ' \
           '"rbac.authorization.k8s.io" at the cluster scope' in r.stderr
    with w.http("carol") as h:
        st = h.delete("/api/v1/namespaces/alice/configmaps").json()
        assert st["code"] == 403 and st["reason"] == "Forbidden" and st["details"] == {"name": "", "group": "", "kind": "configmaps"}
        assert st["message"].endswith('cannot deletecollection resource "configmaps" in API group "" in the namespace "alice"')


def test_each_user_sees_and_does_what_rbac_allows_kubectl_and_kubernetes_client(w):
    from kubernetes.client.rest import ApiException

    w.k.kubectl("create", "secret", "generic", "s1", "-n", "alice", "--from-literal=k=v")
    # bob (edit on alice): pods and secrets in alice, his own namespace, nothing of anyone else at cluster scope
    assert w.kubectl("bob", "create", "configmap", "bobs", "-n", "alice").returncode == 0
    bob, carol, dave = w.kube("bob"), w.kube("carol"), w.kube("dave")
    assert [s.metadata.name for s in bob.list_namespaced_secret("alice").items] == ["s1"]
    assert bob.list_namespaced_pod("bob").items == []
    # carol (view on alice): reads, never writes, never Secrets
    assert "bobs" in [c.metadata.name for c in carol.list_namespaced_config_map("alice").items]
    for call in (lambda: carol.list_namespaced_secret("alice"),
                 lambda: carol.create_namespaced_config_map("alice", {"metadata": {"name": "x"}}),
                 lambda: carol.list_namespaced_pod("bob"), lambda: carol.list_pod_for_all_namespaces(),
                 lambda: dave.list_namespaced_pod("alice"), lambda: dave.list_namespace()):
        with pytest.raises(ApiException) as e:
            call()
        assert e.value.status == 403
    # watch is a verb of its own, refused where list is
    from kubernetes import watch

    with pytest.raises(ApiException) as e:
        for _ in watch.Watch().stream(dave.list_namespaced_pod, "alice", timeout_seconds=1):
            pass
    assert e.value.status == 403
    assert list(watch.Watch().stream(carol.list_namespaced_config_map, "alice", timeout_seconds=1))  # carol may watch alice's
    # kubectl auth can-i / --list / whoami as each user
    assert w.kubectl("bob", "auth", "can-i", "create", "pods", "-n", "alice").stdout.strip() == "yes"
    assert w.kubectl("carol", "auth", "can-i", "create", "pods", "-n", "alice").stdout.strip() == "no"
    assert w.kubectl("carol", "auth", "can-i", "get", "pods", "-n", "alice").stdout.strip() == "yes"
    assert w.kubectl("carol", "auth", "can-i", "create", "pods/exec", "-n", "alice").stdout.strip() == "no"
    assert w.kubectl("alice", "auth", "can-i", "create", "rolebindings", "-n", "alice").stdout.strip() == "yes"
    assert w.kubectl("alice", "auth", "can-i", "get", "pods", "-n", "bob").stdout.strip() == "no"
    listing = w.kubectl("carol", "auth", "can-i", "--list", "-n", "alice", check=True).stdout
    row = next(line for line in listing.splitlines() if line.startswith("pods "))
    assert "[get list watch]" in row, listing
    assert not any(line.startswith("secrets ") for line in listing.splitlines()), listing
    who = w.kubectl("carol", "auth", "whoami", "-o", "json", check=True).stdout
    assert json.loads(who)["status"]["userInfo"] == {"username": "carol", "uid": "carol", "groups": ["system:authenticated"]}


def test_resource_names_subresources_and_nonresource_urls(w):
    k = w.k
    k.kubectl("create", "configmap", "public", "-n", "alice", "--from-literal=a=1")
    k.kubectl("create", "configmap", "private", "-n", "alice", "--from-literal=a=2")
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "narrow", "namespace": "alice"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["public"], "verbs": ["get", "list", "watch"]},
                      {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]}
    assert w.kubectl("alice", "apply", "-f", "-", input=json.dumps(role)).returncode == 0
    assert w.kubectl("alice", "create", "rolebinding", "dave-narrow", "--role=narrow", "--user=dave", "-n", "alice").returncode == 0
    with w.http("dave") as h:
        assert h.get("/api/v1/namespaces/alice/configmaps/public").status_code == 200
        r = h.get("/api/v1/namespaces/alice/configmaps/private")
        assert r.status_code == 403 and r.json()["message"].startswith('configmaps "private" is forbidden: User "dave" cannot get')
        assert h.get("/api/v1/namespaces/alice/configmaps").status_code == 403  # a name-restricted rule never allows list
        # ... unless the list or watch names the object, as informers for one object do
        one = h.get("/api/v1/namespaces/alice/configmaps", params={"fieldSelector": "metadata.name=public"})
        assert one.status_code == 200 and [i["metadata"]["name"] for i in one.json()["items"]] == ["public"]
        assert h.get("/api/v1/namespaces/alice/configmaps", params={"watch": "true", "fieldSelector": "metadata.name=private",
                                                                      "timeoutSeconds": "1"}).status_code == 403
        r = h.get("/api/v1/namespaces/alice/pods/p/log")
        assert r.status_code == 404, r.text  # allowed through RBAC (pods/log), then no such pod
        r = h.get("/api/v1/namespaces/alice/pods/p")
        assert r.status_code == 403 and 'cannot get resource "pods" in API group ""' in r.json()["message"]
        assert h.get("/version").status_code == 200 and h.get("/apis").status_code == 200  # system:discovery
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"user": "dave", "resourceAttributes": {"namespace": "alice", "verb": "get", "resource": "pods", "subresource": "log"}}}
    out = json.loads(k.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(sar)).stdout)
    assert out["status"]["allowed"] is True
    sar["spec"]["resourceAttributes"]["subresource"] = "exec"
    assert json.loads(k.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(sar)).stdout)["status"]["allowed"] is False
    r = w.kubectl("dave", "create", "-f", "-", input=json.dumps(sar))  # dave may not ask about others
    assert r.returncode != 0 and 'cannot create resource "subjectaccessreviews"' in r.stderr
    # a review is answered, not stored, so its spec's types are checked where it is read: a 422 naming the field
    bad = {"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
           "spec": {"groups": [["g"]], "nonResourceAttributes": {"path": "/", "verb": "get"}}}
    with k.http() as h:
        r = h.post("/apis/authorization.k8s.io/v1/namespaces/alice/localsubjectaccessreviews", json=bad)
    assert r.status_code == 422 and r.json()["details"]["causes"][0]["field"] == "spec.groups[0]", r.text


def test_escalation_is_prevented(w):
    # alice administers her namespace, but cannot grant what she does not hold
    r = w.kubectl("alice", "create", "rolebinding", "grab", "--clusterrole=cluster-admin", "--user=dave", "-n", "alice")
    assert r.returncode != 0 and 'user "alice" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held' in r.stderr, r.stderr
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "nodes", "namespace": "alice"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}, {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}
    r = w.kubectl("alice", "apply", "-f", "-", input=json.dumps(role))
    assert r.returncode != 0 and '{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}' in r.stderr, r.stderr
    assert w.k.kubectl("get", "role", "nodes", "-n", "alice", check=False).returncode != 0
    # whoever may create ClusterRoles still may not write an aggregationRule without escalate
    maker = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "role-maker"},
             "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["create"]}]}
    w.k.kubectl("apply", "-f", "-", input=json.dumps(maker))
    w.k.kubectl("create", "clusterrolebinding", "dave-maker", "--clusterrole=role-maker", "--user=dave")
    agg = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "sneaky"},
           "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]}}
    r = w.kubectl("dave", "create", "-f", "-", input=json.dumps(agg))
    assert r.returncode != 0 and 'must have cluster-admin privileges to use the aggregationRule' in r.stderr, r.stderr
    ok = {**maker, "metadata": {"name": "same-as-mine"}}
    assert w.kubectl("dave", "create", "-f", "-", input=json.dumps(ok)).returncode == 0  # what he holds, he may grant
    w.k.kubectl("delete", "clusterrolebinding", "dave-maker")
    # bob (edit) may not touch bindings at all; alice may grant view
    r = w.kubectl("bob", "create", "rolebinding", "x", "--clusterrole=view", "--user=dave", "-n", "alice")
    assert r.returncode != 0 and 'cannot create resource "rolebindings"' in r.stderr
    assert w.kubectl("alice", "create", "rolebinding", "dave-view", "--clusterrole=kubeflow-view", "--user=dave", "-n", "alice").returncode == 0
    assert w.kubectl("dave", "auth", "can-i", "list", "pods", "-n", "alice").stdout.strip() == "yes"
    w.k.kubectl("delete", "rolebinding", "dave-view", "-n", "alice")
    assert w.kubectl("dave", "auth", "can-i", "list", "pods", "-n", "alice").stdout.strip() == "no"


def test_impersonation(w):
    k = w.k
    assert k.kubectl("get", "configmaps", "-n", "alice", "--as", "carol").returncode == 0
    r = k.kubectl("create", "configmap", "imp", "-n", "alice", "--as", "carol", check=False)
    assert r.returncode != 0 and 'User "carol" cannot create resource "configmaps"' in r.stderr
    who = json.loads(k.kubectl("auth", "whoami", "--as", "erin", "--as-group", "team-x", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == "erin" and who["status"]["userInfo"]["groups"] == ["team-x", "system:authenticated"]
    r = w.kubectl("bob", "get", "pods", "-n", "alice", "--as", "carol")
    assert r.returncode != 0 and 'users "carol" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at the cluster scope' in r.stderr


def test_cluster_role_aggregation(w):
    k = w.k
    extra = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "widgets-view", "labels": {"rbac.authorization.kubeflow.org/aggregate-to-kubeflow-view": "true"}},
             "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}]}
    k.kubectl("apply", "-f", "-", input=json.dumps(extra))
    for role in ("kubeflow-view", "kubeflow-edit", "kubeflow-admin"):  # view feeds edit feeds admin
        wait_for(lambda role=role: any("widgets" in (r.get("resources") or []) for r in k.kjson("get", "clusterrole", role).get("rules") or []),
                 what=f"{role} aggregating widgets")
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"user": "carol", "resourceAttributes": {"namespace": "alice", "verb": "list", "group": "example.com", "resource": "widgets"}}}
    assert json.loads(k.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(sar)).stdout)["status"]["allowed"] is True
    view = k.kjson("get", "clusterrole", "view")
    assert any("pods" in (r.get("resources") or []) for r in view["rules"]) and not any("secrets" in (r.get("resources") or []) for r in view["rules"])


def test_service_accounts_get_what_their_bindings_give(w):
    k = w.k
    viewer = k.kubectl("create", "token", "default-viewer", "-n", "alice").stdout.strip()
    editor = k.kubectl("create", "token", "default-editor", "-n", "alice").stdout.strip()
    cm = {"metadata": {"name": "from-sa"}}
    with httpx.Client(base_url=k.url, timeout=30) as h:
        v, e = {"Authorization": f"Bearer {viewer}"}, {"Authorization": f"Bearer {editor}"}
        assert h.get("/api/v1/namespaces/alice/pods", headers=v).status_code == 200
        r = h.post("/api/v1/namespaces/alice/configmaps", json=cm, headers=v)
        assert r.status_code == 403 and 'User "system:serviceaccount:alice:default-viewer" cannot create' in r.json()["message"]
        assert h.post("/api/v1/namespaces/alice/configmaps", json=cm, headers=e).status_code == 201
        assert h.get("/api/v1/namespaces/bob/pods", headers=e).status_code == 403
    # the default account of each namespace (what Pods run as) edits its own namespace, by a binding one can see
    assert k.kjson("get", "rolebinding", "ketch-default-edit", "-n", "bob")["subjects"] == [
        {"kind": "ServiceAccount", "name": "default", "namespace": "bob"}]


def test_non_kubernetes_apis_are_authorized_by_the_table(w):
    # notebook proxy: only who may get the Notebook
    with w.http("dave") as h:
        r = h.get("/notebook/alice/nb/api/kernels")
        assert r.status_code == 403 and 'cannot get resource "notebooks" in API group "kubeflow.org" in the namespace "alice"' in r.json()["message"]
    with w.http("carol") as h:
        assert h.get("/notebook/alice/nb/api/kernels").status_code not in (401, 403)
    # inference gateway: per namespace, by path and by virtual host
    with w.http("dave") as h:
        assert h.post("/serving/alice/m/v1/models/m:predict", json={}).status_code == 403
        assert h.post("/v1/models/m:predict", json={}, headers={"Host": "m.alice.localhost"}).status_code == 403
    with w.http("bob") as h:
        assert h.post("/serving/alice/m/v1/models/m:predict", json={}).status_code not in (401, 403)
    with w.http(None) as h:
        assert h.post("/serving/alice/m/v1/models/m:predict", json={}).status_code == 401
    # Katib's push: who may write the trial; the model registry: readable by every authenticated user
    with w.http("carol") as h:
        r = h.post("/katib/v1/namespaces/alice/trials/t/metrics", json={"metrics": {"loss": 1}})
        assert r.status_code == 403 and 'cannot create resource "trials/metrics"' in r.json()["message"]
    with w.http("bob") as h:
        assert h.post("/katib/v1/namespaces/alice/trials/t/metrics", json={"metrics": {"loss": 1}}).status_code == 404
    with w.http("dave") as h:
        assert h.get("/api/model_registry/v1/registered_models").status_code == 200
        r = h.post("/api/model_registry/v1/registered_models", json={"name": "m"})
        assert r.status_code == 403 and 'in the namespace "kubeflow"' in r.json()["message"]


def test_public_inference_service_needs_no_token(w):
    k = w.k
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "pub", "namespace": "alice", "annotations": {"serving.ketch.io/public": "true"}},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "file:///nonexistent/model"}}}}
    k.kubectl("apply", "-f", "-", input=json.dumps(isvc))

    def passes(h: httpx.Client, path: str, **kw) -> bool:
        """Through the door: the gateway answers, or holds the request for a replica that is not up yet
        (a refusal, 401 or 403, comes at once)."""
        try:
            return h.post(path, json={}, timeout=3, **kw).status_code not in (401, 403)
        except httpx.ReadTimeout:
            return True

    with w.http(None) as h:
        assert passes(h, "/serving/alice/pub/v1/models/pub:predict")
        assert passes(h, "/v1/models/pub:predict", headers={"Host": "pub.alice.localhost"})
        assert h.post("/serving/alice/other/v1/models/other:predict", json={}).status_code == 401
        assert h.get("/api/v1/namespaces/alice/pods").status_code == 401  # nothing else opens
    k.kubectl("delete", "inferenceservice", "pub", "-n", "alice", "--wait=false")


def hello_pipeline(name: str, times: int = 1):
    """A pipeline of ``times`` tasks that print a line: the smallest run a namespace can own."""
    from kfp import dsl

    @dsl.component
    def hello():  # no annotations: this module's `from __future__ import annotations` would make them strings
        print("hello")

    @dsl.pipeline(name=name)
    def pipe():
        for _ in range(times):
            hello()

    return pipe


def test_kfp_runs_belong_to_namespaces(w):
    from kfp_server_api.exceptions import ApiException

    pipe = hello_pipeline("hello")
    alice, bob, carol, dave = (w.kfp(u) for u in ("alice", "bob", "carol", "dave"))
    ea = alice.create_experiment("alice-exp", namespace="alice")
    eb = bob.create_experiment("bob-exp", namespace="bob")
    ra = alice.create_run_from_pipeline_func(pipe, experiment_id=ea.experiment_id, run_name="a1").run_id
    rb = bob.create_run_from_pipeline_func(pipe, experiment_id=eb.experiment_id, run_name="b1").run_id

    def ids(c, ns):
        return {r.run_id for r in (c.list_runs(namespace=ns, page_size=100).runs or [])}

    assert ids(alice, "alice") == {ra} and ids(bob, "bob") == {rb}
    assert ids(bob, "alice") == {ra} and ids(carol, "alice") == {ra}  # contributors see the namespace's runs
    assert {e.experiment_id for e in carol.list_experiments(namespace="alice").experiments} == {ea.experiment_id}
    assert carol.get_run(ra).run_id == ra
    for call in (lambda: alice.list_runs(namespace="bob"), lambda: carol.list_runs(namespace="bob"), lambda: dave.list_runs(namespace="alice"),
                 lambda: carol.list_runs(), lambda: alice.get_run(rb), lambda: dave.list_experiments(namespace="alice"),
                 lambda: carol.create_run_from_pipeline_func(pipe, experiment_id=ea.experiment_id),
                 lambda: dave.create_experiment("d", namespace="alice"), lambda: carol.create_experiment("c", namespace="alice")):
        with pytest.raises(ApiException) as e:
            call()
        assert e.value.status == 403, e.value.body
    msg = json.loads(e.value.body)["message"]
    assert msg == 'experiments.pipelines.kubeflow.org is forbidden: User "carol" cannot create resource "experiments" ' \
                  'in API group "pipelines.kubeflow.org" in the namespace "alice"'
    # experiment names are per namespace: bob may have an "alice-exp" of his own, and sees only his
    mine = bob.create_experiment("alice-exp", namespace="bob")
    assert mine.experiment_id != ea.experiment_id
    assert {e.experiment_id for e in bob.list_experiments(namespace="bob").experiments} == {eb.experiment_id, mine.experiment_id}
    # the admin (system:masters) sees every namespace's runs
    assert {ra, rb} <= {r.run_id for r in (w.k.kfp_client().list_runs(page_size=100).runs or [])}


def _package(pipe, path: Path) -> str:
    from kfp import compiler

    compiler.Compiler().compile(pipe, str(path))
    return str(path)


def test_kfp_tasks_run_in_the_profile_namespace_as_default_editor(w):
    """As KFP multi-user: a run of a Profile namespace's experiment makes its task Pods in that namespace
    under its ``default-editor`` ServiceAccount; a namespace without that account keeps KFP's own."""
    pipe = hello_pipeline("two-hellos", times=2)
    k = w.k
    # erin's own Profile (alice's namespace list stays as the dashboard test expects)
    w.tokens["erin"], w.configs["erin"] = add_user(k, "erin")
    k.kubectl("apply", "-f", "-", input=json.dumps(profile("pipes", "erin")))
    k.kubectl("create", "namespace", "plain")
    wait_for(lambda: k.kubectl("get", "serviceaccount", "default-editor", "-n", "pipes", check=False).returncode == 0, what="default-editor")
    erin = w.kfp("erin", namespace="pipes")
    exp = erin.create_experiment("pipes-exp")  # the client's namespace
    assert {e.experiment_id for e in erin.list_experiments().experiments} == {exp.experiment_id}
    rid = erin.create_run_from_pipeline_func(pipe, experiment_id=exp.experiment_id, run_name="p1", enable_caching=False).run_id
    admin = k.kfp_client()
    plain_rid = admin.create_run_from_pipeline_func(
        pipe, experiment_id=admin.create_experiment("plain-exp", namespace="plain").experiment_id, run_name="q1", enable_caching=False).run_id

    def state(c, r) -> str | None:
        s = c.get_run(r).state
        return s if s in ("SUCCEEDED", "FAILED", "CANCELED") else None

    assert wait_for(lambda: state(erin, rid), timeout=300, interval=1, what="the Profile's run") == "SUCCEEDED", k.log()[-3000:]
    assert wait_for(lambda: state(admin, plain_rid), timeout=300, interval=1, what="the plain run") == "SUCCEEDED", k.log()[-3000:]
    assert {r.run_id for r in erin.list_runs().runs} == {rid}
    pods = k.kjson("get", "pods", "-A", "-l", f"pipelines.kubeflow.org/run={rid}")["items"]
    assert len(pods) == 2
    assert {p["metadata"]["namespace"] for p in pods} == {"pipes"}
    assert {p["spec"].get("serviceAccountName") for p in pods} == {"default-editor"}
    assert k.kjson("get", "pipelinerun", rid, "-n", "pipes")["spec"]["serviceAccount"] == "default-editor"
    # no default-editor in "plain": the tasks run where they always did, under the default account
    plain = k.kjson("get", "pods", "-A", "-l", f"pipelines.kubeflow.org/run={plain_rid}")["items"]
    assert len(plain) == 2 and {p["metadata"]["namespace"] for p in plain} == {"kubeflow"}
    assert {p["spec"].get("serviceAccountName") or "default" for p in plain} == {"default"}
    # a recurring run of the Profile's experiment: it and its runs live in pipes, their tasks as default-editor
    rr = erin.create_recurring_run(experiment_id=exp.experiment_id, job_name="every-2s", interval_second=2, max_concurrency=1,
                                   pipeline_package_path=_package(pipe, k.home / "two-hellos.yaml"), enable_caching=False)
    assert k.kjson("get", "recurringrun", rr.recurring_run_id, "-n", "pipes")["spec"]["serviceAccount"] == "default-editor"
    sched = wait_for(lambda: [p for p in k.kjson("get", "pods", "-n", "pipes")["items"]
                              if p["metadata"]["labels"]["pipelines.kubeflow.org/run"] != rid], timeout=120, interval=1, what="a scheduled run's pods")
    assert {p["spec"].get("serviceAccountName") for p in sched} == {"default-editor"}
    erin.disable_recurring_run(rr.recurring_run_id)
    assert k.kjson("get", "recurringrun", rr.recurring_run_id, "-n", "pipes")["spec"]["mode"] == "DISABLE"
    erin.delete_recurring_run(rr.recurring_run_id)
    wait_for(lambda: k.kubectl("get", "recurringrun", rr.recurring_run_id, "-n", "pipes", check=False).returncode != 0, what="deleted")
    # bob's Profile has a quota on requests.cpu: task Pods that name none are refused, and the run fails
    # with the quota's words instead of retrying the create
    bob = w.kfp("bob")
    brid = bob.create_run_from_pipeline_func(pipe, experiment_id=bob.create_experiment("bob-quota", namespace="bob").experiment_id,
                                             enable_caching=False).run_id
    assert wait_for(lambda: state(bob, brid), timeout=120, interval=1, what="bob's run") == "FAILED"
    detail = json.dumps(k.kjson("get", "pipelinerun", brid, "-n", "bob")["status"])
    assert "must specify requests.cpu" in detail, detail
    # alice (no rights in pipes) cannot reach the Profile's run
    from kfp_server_api.exceptions import ApiException

    with pytest.raises(ApiException) as e:
        w.kfp("alice").get_run(rid)
    assert e.value.status == 403


def test_exec_refused_to_a_viewer_allowed_to_an_editor(w):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sh", "namespace": "alice"},
           "spec": {"restartPolicy": "Never", "containers": [
               {"name": "c", "image": "python:3.11", "command": [sys.executable, "-c", "import time; time.sleep(120)"]}]}}
    assert w.kubectl("bob", "apply", "-f", "-", input=json.dumps(pod)).returncode == 0
    wait_for(lambda: w.k.kubectl("get", "pod", "sh", "-n", "alice", "-o", "jsonpath={.status.phase}").stdout == "Running", timeout=60)
    r = w.kubectl("carol", "exec", "sh", "-n", "alice", "--", "true")
    assert r.returncode != 0 and 'pods "sh" is forbidden: User "carol" cannot create resource "pods/exec" in API group "" ' \
                                 'in the namespace "alice"' in r.stderr, r.stderr
    r = w.kubectl("bob", "exec", "sh", "-n", "alice", "--", "echo", "in")
    assert r.returncode == 0 and r.stdout.strip() == "in", r.stderr
    assert w.kubectl("carol", "logs", "sh", "-n", "alice").returncode == 0  # view includes pods/log
    w.k.kubectl("delete", "pod", "sh", "-n", "alice", "--wait=false")
    time.sleep(0.1)


def test_kfam_bindings_manage_contributors(w):
    erin = {"user": {"kind": "User", "name": "erin@example.org"}, "referredNamespace": "alice",
            "RoleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}}
    with w.http("carol") as h:
        r = h.post("/kfam/v1/bindings", json=erin)
        assert r.status_code == 403 and 'cannot create resource "rolebindings"' in r.json()["message"]
    with w.http("alice") as h:
        assert h.post("/kfam/v1/bindings", json=erin).status_code == 200
        got = h.get("/kfam/v1/bindings", params={"namespace": "alice"}).json()["bindings"]
        assert {(b["user"]["name"], b["RoleRef"]["name"]) for b in got} >= {("alice", "admin"), ("bob", "edit"), ("carol", "view"),
                                                                              ("erin@example.org", "view")}
        assert h.get("/kfam/v1/role/clusteradmin", params={"user": "alice"}).json() is False
    rb = w.k.kjson("get", "rolebinding", "user-erin-example-org-clusterrole-view", "-n", "alice")
    assert rb["metadata"]["annotations"] == {"user": "erin@example.org", "role": "view"} and rb["roleRef"]["name"] == "kubeflow-view"
    sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
        "user": "erin@example.org", "resourceAttributes": {"namespace": "alice", "verb": "list", "resource": "pods"}}}
    assert json.loads(w.k.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(sar)).stdout)["status"]["allowed"] is True
    with w.http("bob") as h:  # a contributor does not manage contributors
        assert h.request("DELETE", "/kfam/v1/bindings", json=erin).status_code == 403
        assert h.get("/kfam/v1/bindings", params={"namespace": "alice"}).status_code == 403
    with w.http("alice") as h:
        assert h.request("DELETE", "/kfam/v1/bindings", json=erin).status_code == 200
    assert w.k.kubectl("get", "rolebinding", "user-erin-example-org-clusterrole-view", "-n", "alice", check=False).returncode != 0
    assert w.k.kfp_client() is not None and w.k.http().get("/kfam/v1/role/clusteradmin", params={"user": "admin"}).json() is True


def test_dashboard_shows_own_namespaces_and_manages_contributors(w, chromium):
    def page_as(user: str):
        ctx = chromium.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(15000)
        r = page.context.request.post(f"{w.k.url}/login", form={"token": w.tokens[user]}, max_redirects=0)
        assert r.status == 303, r.text()
        return ctx, page, errors

    ctx, page, errors = page_as("alice")
    try:
        page.goto(f"{w.k.url}/#/contributors")
        page.wait_for_selector("#ns option", state="attached")
        assert page.eval_on_selector_all("#ns option", "os => os.map(o => o.value)") == ["alice"]  # not bob's, no "All"
        page.wait_for_selector("#contributors td:has-text('carol')")
        page.fill("#contrib-user", "frank@example.org")
        page.select_option("#contrib-role", "view")
        page.click("#contrib-form button[type=submit]")
        page.wait_for_selector("#contributors td:has-text('frank@example.org')")
        rb = w.k.kjson("get", "rolebinding", "user-frank-example-org-clusterrole-view", "-n", "alice")
        assert rb["subjects"][0]["name"] == "frank@example.org"
        page.click("#contributors button[data-user='frank@example.org']")
        page.wait_for_selector("#contributors td:has-text('frank@example.org')", state="detached")
        assert not errors, errors
    finally:
        ctx.close()
    ctx, page, errors = page_as("bob")
    try:
        page.goto(f"{w.k.url}/#/contributors")
        page.wait_for_selector("#ns option", state="attached")
        opts = page.eval_on_selector_all("#ns option", "os => os.map(o => o.textContent)")
        assert sorted(opts) == ["alice (edit)", "bob (owner)"], opts
        page.select_option("#ns", "alice")
        page.wait_for_selector("#contrib-readonly")  # a contributor sees who else is there, with no buttons
        assert page.locator("#contrib-form").count() == 0 and page.locator(".contrib-remove").count() == 0
        assert not errors, errors
    finally:
        ctx.close()
    # carol has view on alice: the dashboard offers her no write, with the reason; bob (edit) keeps them
    ctx, page, errors = page_as("carol")
    try:
        page.goto(f"{w.k.url}/#/runs")
        page.wait_for_selector("#ns option", state="attached")
        create = page.locator("#main a", has_text="Create run")
        expect(create).to_have_attribute("aria-disabled", "true")
        assert "role in namespace alice is view" in create.get_attribute("title")
        expect(page.locator("#main button", has_text="Terminate")).to_be_disabled()
        page.goto(f"{w.k.url}/#/notebooks")
        expect(page.locator("#nb-new")).to_have_attribute("aria-disabled", "true")
        assert not errors, errors
    finally:
        ctx.close()
    ctx, page, errors = page_as("bob")
    try:
        page.goto(f"{w.k.url}/#/notebooks")
        page.wait_for_selector("#ns option", state="attached")
        page.select_option("#ns", "alice")
        expect(page.locator("#nb-new")).to_have_attribute("href", "#/notebooks/new")
        assert page.locator("#nb-new").get_attribute("aria-disabled") is None
    finally:
        ctx.close()


IN_POD = """
import json, os, sys, urllib.request, urllib.error
from ketch.kinds.mounts import bearer
url = os.environ["KETCH_SERVER"]
def call(method, path, body=None):
    req = urllib.request.Request(url + path, method=method, headers={"Content-Type": "application/json", **bearer()},
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
ns = sys.argv[1]
print(json.dumps({"own": call("GET", f"/api/v1/namespaces/{ns}/pods"), "other": call("GET", "/api/v1/namespaces/alice/configmaps"),
                  "push": call("POST", f"/katib/v1/namespaces/{ns}/trials/t/metrics", {"metrics": {"loss": 1}}),
                  "registry": call("GET", "/api/model_registry/v1/registered_models")}))
"""


def test_pods_act_as_their_service_account_through_rbac(w, tmp_path):
    """A Pod's own token, from inside the Pod: the namespace's default account edits its namespace (push metrics,
    read the registry) and nothing else; a Profile's default-viewer only reads."""
    script = tmp_path / "inpod.py"
    script.write_text(IN_POD)

    def run(name: str, ns: str, sa: str) -> dict:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
               "spec": {"restartPolicy": "Never", "serviceAccountName": sa, "containers": [{"name": "c", "image": "python:3.11",
                        "command": [sys.executable, str(script), ns], "env": [{"name": "PYTHONPATH", "value": str(SRC)}],
                        "resources": {"requests": {"cpu": "100m"}}}]}}
        w.k.kubectl("apply", "-f", "-", input=json.dumps(pod))
        wait_for(lambda: w.k.kubectl("get", "pod", name, "-n", ns, "-o", "jsonpath={.status.phase}").stdout in ("Succeeded", "Failed"), timeout=90)
        logs = w.k.kubectl("logs", name, "-n", ns).stdout
        return json.loads(logs.strip().splitlines()[-1])

    assert run("as-default", "bob", "default") == {"own": 200, "other": 403, "push": 404, "registry": 200}  # 404: authorized, no trial t
    assert run("as-viewer", "alice", "default-viewer") == {"own": 200, "other": 200, "push": 403, "registry": 200}


def test_kubeflow_sdk_acts_as_its_user(w):
    """The kubeflow SDK (TrainerClient) with each user's kubeconfig: carol (view on alice) lists alice's
    TrainJobs but cannot start one; bob (edit on alice) may; dave (no binding) cannot even list."""
    from kubeflow.common.types import KubernetesBackendConfig
    from kubeflow.trainer import CustomTrainer, TrainerClient

    def client(user: str) -> TrainerClient:
        return TrainerClient(KubernetesBackendConfig(config_file=str(w.configs[user]), namespace="alice"))

    runtime = TrainerClient(KubernetesBackendConfig(config_file=str(w.k.kubeconfig), namespace="alice")).get_runtime("torch-distributed")
    trainer = CustomTrainer(func=hello_func, num_nodes=1, resources_per_node={"cpu": "100m"})
    assert client("carol").list_jobs() == []
    with pytest.raises(Exception) as refused:
        client("carol").train(runtime=runtime, trainer=trainer)
    assert _forbidden(refused.value), refused.value
    assert w.k.kjson("get", "trainjobs", "-n", "alice")["items"] == []  # nothing half-made
    job = client("bob").train(runtime=runtime, trainer=trainer)
    assert job in {j.name for j in client("carol").list_jobs()}  # the viewer sees what the editor started
    with pytest.raises(Exception) as hidden:
        client("dave").list_jobs()
    assert _forbidden(hidden.value), hidden.value
    client("bob").delete_job(job)


def _forbidden(e: BaseException | None) -> bool:
    """The SDK wraps the API's 403 in its own RuntimeError: look down the chain of causes."""
    while e is not None:
        if getattr(e, "status", None) == 403 or "forbidden" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False


def hello_func():
    print("hello", flush=True)
