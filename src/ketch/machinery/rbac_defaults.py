"""The ClusterRoles and ClusterRoleBindings every cluster starts with (kube-apiserver's bootstrap policy,
reduced to the kinds ketch serves), and Kubeflow's ``kubeflow-admin``/``kubeflow-edit``/``kubeflow-view``.

As in Kubernetes, ``admin``, ``edit`` and ``view`` hold no rules of their own: they aggregate the
``system:aggregate-to-*`` roles by label (and ``edit`` feeds ``admin``, ``view`` feeds ``edit``), so a CRD's
author extends them by labelling a ClusterRole. Kubeflow's roles work the same way with Kubeflow's labels,
and each also aggregates the Kubernetes role of the same level, so a Profile's owner can manage Pods,
Secrets and RoleBindings in the Profile's namespace as Kubeflow's do.

Created when missing at every start; an edited default is left as the user left it.
"""

from __future__ import annotations

from ketch.machinery.api import Api
from ketch.machinery.authz import GROUP, aggregate

K8S_LABEL = "rbac.authorization.k8s.io/aggregate-to-"
KF_LABEL = "rbac.authorization.kubeflow.org/aggregate-to-kubeflow-"
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
CORE_READ = ["pods", "pods/log", "pods/status", "configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status",
             "services", "services/status", "serviceaccounts", "events", "namespaces", "namespaces/status", "limitranges",
             "resourcequotas", "resourcequotas/status"]
CORE_WRITE = ["pods", "configmaps", "endpoints", "persistentvolumeclaims", "secrets", "services", "serviceaccounts", "events"]
POD_CONNECT = ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]
# Kubeflow's API groups: what ketch/kinds/crds serves, plus KFP's API (runs, experiments, pipelines).
KUBEFLOW_GROUPS = ["kubeflow.org", "pipelines.kubeflow.org", "serving.kserve.io", "trainer.kubeflow.org", "modelregistry.kubeflow.org"]
# KFP's own verbs beyond Kubernetes' (multi-user KFP checks them with SubjectAccessReviews).
KFP_EDIT_VERBS = ["archive", "unarchive", "terminate", "retry", "readArtifact", "reportMetrics", "enable", "disable"]


def _rule(groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None) -> dict:
    r: dict = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        r["resourceNames"] = names
    return r


def _cr(name: str, rules: list[dict] | None = None, labels: dict | None = None, selectors: list[dict] | None = None) -> dict:
    obj: dict = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
                 "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
                              "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
                 "rules": rules or []}
    if selectors is not None:
        obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": s} for s in selectors]}
    return obj


def _crb(name: str, role: str, group: str) -> dict:
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                         "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": GROUP, "kind": "Group", "name": group}]}


def cluster_roles() -> list[dict]:
    t = "true"
    return [
        _cr("cluster-admin", [_rule(["*"], ["*"], ["*"]), {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        _cr("admin", selectors=[{f"{K8S_LABEL}admin": t}]),
        _cr("edit", labels={f"{K8S_LABEL}admin": t}, selectors=[{f"{K8S_LABEL}edit": t}]),
        _cr("view", labels={f"{K8S_LABEL}edit": t}, selectors=[{f"{K8S_LABEL}view": t}]),
        _cr("system:aggregate-to-view", labels={f"{K8S_LABEL}view": t}, rules=[
            _rule([""], CORE_READ, READ), _rule(["apps", "batch", "autoscaling", "policy"], ["*"], READ),
            _rule(["discovery.k8s.io"], ["endpointslices"], READ)]),
        _cr("system:aggregate-to-edit", labels={f"{K8S_LABEL}edit": t}, rules=[
            _rule([""], POD_CONNECT, ["get", "create"]), _rule([""], POD_CONNECT + ["pods/eviction"], WRITE),
            _rule([""], CORE_WRITE, WRITE), _rule([""], ["secrets"], READ), _rule([""], ["serviceaccounts"], ["impersonate"]),
            _rule([""], ["serviceaccounts/token"], ["create"]), _rule(["apps", "batch", "autoscaling", "policy"], ["*"], WRITE)]),
        _cr("system:aggregate-to-admin", labels={f"{K8S_LABEL}admin": t}, rules=[
            _rule([GROUP], ["roles", "rolebindings"], READ + WRITE),
            _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
            _rule([""], ["resourcequotas", "limitranges"], READ)]),
        _cr("system:basic-user", [_rule(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
                                  _rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"])]),
        _cr("system:discovery", [{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version",
                                                      "/version/", "/healthz", "/livez", "/readyz"], "verbs": ["get"]}]),
        # Kubeflow's roles: each level aggregates Kubeflow's label and the Kubernetes role of the same level.
        _cr("kubeflow-admin", selectors=[{f"{KF_LABEL}admin": t}]),
        _cr("kubeflow-edit", labels={f"{KF_LABEL}admin": t}, selectors=[{f"{KF_LABEL}edit": t}]),
        _cr("kubeflow-view", labels={f"{KF_LABEL}edit": t}, selectors=[{f"{KF_LABEL}view": t}]),
        _cr("kubeflow-kubernetes-admin", labels={f"{KF_LABEL}admin": t}, rules=[
            _rule([GROUP], ["roles", "rolebindings"], READ + WRITE),
            _rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"])]),
        _cr("kubeflow-kubernetes-edit", labels={f"{KF_LABEL}edit": t}, selectors=[{f"{K8S_LABEL}edit": t}]),
        _cr("kubeflow-kubernetes-view", labels={f"{KF_LABEL}view": t}, selectors=[{f"{K8S_LABEL}view": t}]),
        _cr("kubeflow-view-kubeflow-kinds", labels={f"{KF_LABEL}view": t}, rules=[_rule(KUBEFLOW_GROUPS, ["*"], READ + ["readArtifact"])]),
        # The model registry is one for the installation (namespace kubeflow): every authenticated user and
        # Pod may read it (model servers download from it); writes need a binding in namespace kubeflow.
        _cr("ketch:model-registry-reader", [_rule(["modelregistry.kubeflow.org"], ["*"], ["get", "list"])]),
        # ClusterTrainingRuntimes are the installation's catalogue of training blueprints: a namespace's
        # RoleBinding cannot grant a cluster-scoped read, and the kubeflow SDK reads the runtime of every job
        # it lists or starts, so every authenticated user may read them (writing them stays an admin's).
        _cr("ketch:training-runtimes-reader", [_rule(["trainer.kubeflow.org"], ["clustertrainingruntimes"], READ)]),
        _cr("kubeflow-edit-kubeflow-kinds", labels={f"{KF_LABEL}edit": t}, rules=[_rule(KUBEFLOW_GROUPS, ["*"], WRITE + KFP_EDIT_VERBS)]),
    ]


def cluster_role_bindings() -> list[dict]:
    return [
        _crb("cluster-admin", "cluster-admin", "system:masters"),
        _crb("system:basic-user", "system:basic-user", "system:authenticated"),
        _crb("system:discovery", "system:discovery", "system:authenticated"),
        _crb("ketch:model-registry-readers", "ketch:model-registry-reader", "system:authenticated"),
        _crb("ketch:training-runtimes-readers", "ketch:training-runtimes-reader", "system:authenticated"),
    ]


def ensure(api: Api) -> None:
    """Create the defaults that are missing, then aggregate once so they hold their rules from the start."""
    cr, crb = api.rd(f"{GROUP}/v1", "ClusterRole"), api.rd(f"{GROUP}/v1", "ClusterRoleBinding")
    for obj in cluster_roles():
        if api.try_get(cr, "", obj["metadata"]["name"]) is None:
            api.create(cr, "", obj)
    for obj in cluster_role_bindings():
        if api.try_get(crb, "", obj["metadata"]["name"]) is None:
            api.create(crb, "", obj)
    apply_aggregation(api)


def apply_aggregation(api: Api) -> int:
    """Write each aggregating ClusterRole's rules (the controller calls this on every ClusterRole change)."""
    cr = api.rd(f"{GROUP}/v1", "ClusterRole")
    items = api.list(cr)["items"]
    by_name = {o["metadata"]["name"]: o for o in items}
    n = 0
    for name, rules in aggregate(items).items():
        obj = by_name[name]
        obj["rules"] = rules
        api.update(cr, "", name, obj)
        n += 1
    return n
