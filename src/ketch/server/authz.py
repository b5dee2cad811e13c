"""The authorization layer: right behind authentication, in front of every route.

For each request it (1) applies impersonation (``Impersonate-User``/``-Group``/``-Uid`` headers, i.e.
``kubectl --as``/``--as-group``) when the caller may ``impersonate`` those users, groups and
ServiceAccounts; (2) turns the request into Kubernetes request attributes: a Kubernetes API path through
``machinery.requestinfo``, every other API through the one table below (``ROUTES``); (3) asks the RBAC
authorizer (``machinery.authz``), and answers 403 in kube-apiserver's words when it says no. Handlers
behind never check permissions themselves; they can read the caller from ``machinery.authz.current_user``.

The table gives the non-Kubernetes APIs Kubernetes attributes, as Kubeflow does:
- KFP (``/apis/v2beta1``): ``pipelines.kubeflow.org`` resources ``experiments``, ``runs``,
  ``recurringruns``, ``pipelines`` with KFP's verbs, in the namespace of the request (its ``namespace``
  parameter or the namespace of the experiment/run it names), as KFP's multi-user mode does;
- the notebook proxy: ``get`` on the Notebook; the inference gateway: ``get`` on the InferenceService
  (anyone, even without a token, when the InferenceService is annotated ``serving.ketch.io/public: "true"``);
- KFAM's ``/kfam/v1/bindings``: ``list``/``create``/``delete`` on ``rolebindings`` in the namespace;
- Katib's metrics push: ``create`` on ``trials/metrics``; the model registry: ``modelregistry.kubeflow.org``
  resources in the ``kubeflow`` namespace; the dashboard's artifact route: ``readArtifact`` on the run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from ketch.machinery.api import Api
from ketch.machinery.authn import AUTHENTICATED, UserInfo
from ketch.machinery.authz import Authorizer, current_user, forbidden
from ketch.machinery.errors import StatusError
from ketch.machinery.requestinfo import Attributes, from_request
from ketch.server.auth import ASGIApp, Receive, Scope, Send, is_kube_path
from ketch.server.replay import replay

PUBLIC_ANNOTATION = "serving.ketch.io/public"
ANONYMOUS = UserInfo("system:anonymous", "", ("system:unauthenticated",))
KFP = "pipelines.kubeflow.org"
REGISTRY_NS = "kubeflow"
Resolver = Callable[["Lookups", re.Match, str, dict, Any], "Attributes | None"]


class Lookups:
    """The reads the route table needs to find an object's namespace (a run's, an experiment's)."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def _rd(self, kind: str):  # noqa: ANN202
        try:
            return self.api.rd(f"{KFP}/v1", kind)
        except StatusError:
            return None

    def experiment_ns(self, eid: str) -> str:
        rd = self._rd("PipelineExperiment")
        if rd is None or not eid or not isinstance(eid, str):  # a body's experiment_id may be anything
            return ""
        o = self.api.store.get(rd.key, "kubeflow", eid)  # KFP keeps its objects in its own namespace
        return ((o or {}).get("spec") or {}).get("namespace") or ""

    def run_ns(self, rid: str, kind: str = "PipelineRun") -> str:
        rd = self._rd(kind)
        if rd is None or not rid or not isinstance(rid, str):
            return ""
        o = self.api.store.get(rd.key, "kubeflow", rid)
        if o is None:
            found = self.api.list(rd, None, None, None, f"metadata.name={rid}")["items"]
            o = found[0] if found else None
        if o is None:
            return ""
        spec = o.get("spec") or {}
        return spec.get("namespace") or self.experiment_ns(spec.get("experimentId", "")) or \
            (o["metadata"].get("namespace") if o["metadata"].get("namespace") != "kubeflow" else "")

    def isvc_public(self, ns: str, name: str) -> bool:
        try:
            rd = self.api.rd("serving.kserve.io/v1beta1", "InferenceService")
        except StatusError:
            return False
        o = self.api.store.get(rd.key, ns, name)
        return bool(o) and ((o["metadata"].get("annotations") or {}).get(PUBLIC_ANNOTATION) == "true")


# -- the route table for the non-Kubernetes APIs --------------------------------------------------------

def _kfp_verb(method: str, has_id: bool, action: str) -> str:
    if action:
        return {"archive": "archive", "unarchive": "unarchive", "terminate": "terminate", "retry": "retry",
                "enable": "enable", "disable": "disable"}.get(action, action)
    if method == "GET":
        return "get" if has_id else "list"
    if method == "DELETE":
        return "delete"
    return "create" if not has_id else "update"


def _kfp(resource: str) -> Resolver:
    def resolve(lk: Lookups, m: re.Match, method: str, q: dict, body: Any) -> Attributes | None:
        ident, _, action = (m.groupdict().get("id") or "").partition(":")
        ns = (q.get("namespace") or [""])[0]
        if not ns and (q.get("resource_reference_key.type") or [""])[0] == "NAMESPACE":
            ns = (q.get("resource_reference_key.id") or [""])[0]
        if ident:
            ns = lk.experiment_ns(ident) if resource == "experiments" else \
                lk.run_ns(ident, "RecurringRun" if resource == "recurringruns" else "PipelineRun") if resource != "pipelines" else ns
        elif resource in ("runs", "recurringruns"):
            eid = (q.get("experiment_id") or [""])[0]
            if isinstance(body, dict):
                eid = body.get("experiment_id") or eid
            if eid:
                ns = lk.experiment_ns(eid) or ns
        if isinstance(body, dict) and not ident and resource == "experiments" and isinstance(body.get("namespace"), str):
            ns = body.get("namespace") or ns
        if resource == "pipelines" and not ns:
            return None  # shared pipelines (no namespace): every authenticated user, as in KFP's multi-user mode
        return Attributes(_kfp_verb(method, bool(ident), action), KFP, resource, "", ns, ident)
    return resolve


def _simple(group: str, resource: str, sub: str = "", verb: str | None = None, ns: str | None = None) -> Resolver:
    def resolve(lk: Lookups, m: re.Match, method: str, q: dict, body: Any) -> Attributes:
        g = m.groupdict()
        v = verb or {"GET": "get" if g.get("name") else "list", "POST": "create", "PUT": "update",
                     "PATCH": "patch", "DELETE": "delete"}.get(method, "get")
        return Attributes(v, group, resource, sub, ns if ns is not None else g.get("ns", ""), g.get("name") or "")
    return resolve


def _gateway(lk: Lookups, m: re.Match, method: str, q: dict, body: Any) -> Attributes | None:
    ns, name = m.group("ns"), m.group("name")
    if lk.isvc_public(ns, name):
        return None
    return Attributes("get", "serving.kserve.io", "inferenceservices", "", ns, name)


def _kfam(lk: Lookups, m: re.Match, method: str, q: dict, body: Any) -> Attributes:
    from ketch.ui.kfam import binding_name

    if method == "GET":
        return Attributes("list", "rbac.authorization.k8s.io", "rolebindings", "", (q.get("namespace") or [""])[0], "")
    b = body if isinstance(body, dict) else {}
    user, role = (b.get("user") or {}).get("name") or "", ((b.get("RoleRef") or b.get("roleRef") or {}).get("name") or "")
    name = binding_name(user, role.removeprefix("kubeflow-")) if method == "DELETE" else ""
    return Attributes("create" if method == "POST" else "delete", "rbac.authorization.k8s.io", "rolebindings", "",
                      b.get("referredNamespace") or "", name)


def _artifact(lk: Lookups, m: re.Match, method: str, q: dict, body: Any) -> Attributes:
    rid = m.group("name")
    return Attributes("readArtifact", KFP, "runs", "", lk.run_ns(rid), rid)


_ID = r"(?:/(?P<id>[^/]+))?"
ROUTES: list[tuple[re.Pattern, Resolver]] = [
    (re.compile(r"^/apis/v2beta1/healthz$"), lambda *a: None),
    (re.compile(rf"^/apis/v2beta1/experiments{_ID}$"), _kfp("experiments")),
    (re.compile(rf"^/apis/v2beta1/runs{_ID}$"), _kfp("runs")),
    (re.compile(rf"^/apis/v2beta1/recurringruns{_ID}$"), _kfp("recurringruns")),
    (re.compile(r"^/apis/v2beta1/pipelines(?:/(?P<id>[^/]+))?(?:/.*)?$"), _kfp("pipelines")),
    (re.compile(r"^/apis/v2beta1/(?:artifacts|executions|contexts)(?:/.*)?$"), _kfp("runs")),
    (re.compile(r"^/notebook/(?P<ns>[^/]+)/(?P<name>[^/]+)(?:/.*)?$"), _simple("kubeflow.org", "notebooks", verb="get")),
    (re.compile(r"^/serving/(?P<ns>[^/]+)/(?P<name>[^/]+)(?:/.*)?$"), _gateway),
    (re.compile(r"^/katib/v1/namespaces/(?P<ns>[^/]+)/trials/(?P<name>[^/]+)/metrics$"),
     _simple("kubeflow.org", "trials", "metrics", verb="create")),
    (re.compile(r"^/katib/v1/namespaces/(?P<ns>[^/]+)/trials/(?P<name>[^/]+)/observations$"),
     _simple("kubeflow.org", "trials", "observations", verb="get")),
    (re.compile(r"^/api/model_registry/v1[^/]*/(?P<res>registered_models?|model_versions?|model_artifacts?|artifacts?|"
                r"inference_services?|serving_environments?|serve_models?)(?:/(?P<name>[^/]+))?(?:/.*)?$"),
     lambda lk, m, method, q, body: Attributes(
         {"GET": "get" if m.group("name") else "list", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method, "get"),
         "modelregistry.kubeflow.org", m.group("res").replace("_", "").rstrip("s") + "s", "", REGISTRY_NS, "")),
    (re.compile(r"^/kfam/v1/bindings$"), _kfam),
    (re.compile(r"^/kfam/v1/role/clusteradmin$"), lambda *a: None),
    (re.compile(r"^/ui/artifacts/(?P<name>[^/]+)/[^/]+$"), _artifact),
]


def gateway_host(host: str, domain: str) -> tuple[str, str] | None:
    """(namespace, name) of ``Host: <name>.<namespace>.<domain>``, as the gateway's virtual hosts."""
    h = host.rsplit(":", 1)[0] if not host.startswith("[") else ""
    if not h.endswith("." + domain):
        return None
    parts = h[: -len(domain) - 1].split(".")
    return (parts[1], parts[0]) if len(parts) == 2 else None


class AuthzMiddleware:
    """Pure ASGI; a request costs a path parse and a few dict lookups in the RBAC index."""

    def __init__(self, app: ASGIApp, authorizer: Authorizer, lookups: Lookups, serving_domain: str = "localhost") -> None:
        self.app = app
        self.authz = authorizer
        self.lookups = lookups
        self.domain = serving_domain

    def public(self, scope: Scope) -> bool:
        """Whether this request may go through without any credential (a public InferenceService); the
        authentication layer asks before answering 401."""
        path = scope.get("path", "")
        target: tuple[str, str] | None = None
        m = re.match(r"^/serving/([^/]+)/([^/]+)", path)
        if m:
            target = (m.group(1), m.group(2))
        else:
            host = next((v.decode("latin-1") for k, v in scope.get("headers") or () if k == b"host"), "")
            target = gateway_host(host, self.domain)
        return target is not None and self.lookups.isvc_public(*target)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user: UserInfo | None = scope.get("ketch.user")
        if scope["type"] not in ("http", "websocket") or user is None:
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or ()
        imp = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers if k[:12].lower() == b"impersonate-"]
        try:
            if imp:
                user = self._impersonate(user, imp)
                scope["ketch.user"] = user
            attrs, receive = await self._attributes(scope, receive, user)
            if attrs is not None and not self.authz.authorize(user, attrs):
                raise forbidden(user, attrs)
        except StatusError as e:
            await _deny(scope, send, e)
            return
        token = current_user.set(user)
        try:
            await self.app(scope, receive, send)
        finally:
            current_user.reset(token)

    # -- attributes --------------------------------------------------------------------------------------

    async def _attributes(self, scope: Scope, receive: Receive, user: UserInfo) -> tuple[Attributes | None, Receive]:
        path: str = scope.get("path", "")
        method = scope.get("method", "GET")
        ws = scope["type"] == "websocket"
        host = next((v.decode("latin-1") for k, v in scope.get("headers") or () if k == b"host"), "")
        vhost = gateway_host(host, self.domain)
        if vhost is not None:
            ns, name = vhost
            if self.lookups.isvc_public(ns, name):
                return None, receive
            return Attributes("get", "serving.kserve.io", "inferenceservices", "", ns, name), receive
        if user is ANONYMOUS or user.name == "system:anonymous":
            # Only a public InferenceService lets a request without a credential this far.
            if self.public(scope):
                return None, receive
            raise StatusError(401, "Unauthorized", "Unauthorized")
        if is_kube_path(path) and not path.startswith("/apis/v2beta1"):
            q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            watch = (q.get("watch") or [""])[0].lower() in ("true", "1", "t")
            return from_request(method, path, watch=watch, websocket=ws, field_selector=(q.get("fieldSelector") or [""])[0]), receive
        for pattern, resolve in ROUTES:
            m = pattern.match(path)
            if m is None:
                continue
            q = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            body = None
            if (path.startswith("/apis/v2beta1/") and method == "POST" or path.startswith("/kfam/") and method in ("POST", "DELETE")) and not ws:
                raw, receive = await _buffer(receive)
                try:
                    body = orjson.loads(raw) if raw else None
                except orjson.JSONDecodeError:
                    body = None
            return resolve(self.lookups, m, method, q, body), receive
        return None, receive  # the dashboard's pages and assets: any authenticated user

    # -- impersonation -----------------------------------------------------------------------------------

    def _impersonate(self, user: UserInfo, imp: list[tuple[str, str]]) -> UserInfo:
        name = next((v for k, v in imp if k == "impersonate-user"), "")
        groups = [g for k, v in imp if k == "impersonate-group" for g in [v.strip()] if g]
        uid = next((v for k, v in imp if k == "impersonate-uid"), "")
        if not name:
            raise StatusError(500, "InternalError", "requested impersonation of groups without a user: Impersonate-User is required")
        p = name.split(":")
        if len(p) == 4 and p[0] == "system" and p[1] == "serviceaccount":
            a = Attributes("impersonate", "", "serviceaccounts", "", p[2], p[3])
        else:
            a = Attributes("impersonate", "", "users", "", "", name)
        checks = [a, *(Attributes("impersonate", "", "groups", "", "", g) for g in groups)]
        if uid:
            checks.append(Attributes("impersonate", "authentication.k8s.io", "uids", "", "", uid))
        for c in checks:
            if not self.authz.authorize(user, c):
                raise forbidden(user, c)
        if len(p) == 4 and p[1] == "serviceaccount" and not groups:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{p[2]}"]
        if name != "system:anonymous" and AUTHENTICATED not in groups:
            groups.append(AUTHENTICATED)
        return UserInfo(name, uid, tuple(groups))


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole body (KFP's request bodies are small) and hand the handler a receive that replays it."""
    chunks: list[bytes] = []
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            break
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    raw = b"".join(chunks)
    return raw, replay(raw, receive)


async def _deny(scope: Scope, send: Send, e: StatusError) -> None:
    body = orjson.dumps(e.status())
    if scope["type"] == "websocket":
        await send({"type": "websocket.http.response.start", "status": e.code, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    path = scope.get("path", "")
    if not (is_kube_path(path) and not path.startswith("/apis/v2beta1")):
        st = e.status()
        body = orjson.dumps({"error": st["message"], "message": st["message"], "code": e.code, "status": st})
    await send({"type": "http.response.start", "status": e.code,
                "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})
