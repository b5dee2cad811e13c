"""KFAM's REST shape (Kubeflow Access Management), which the dashboard's "Manage contributors" uses.

- ``GET /kfam/v1/bindings?namespace=NS`` (or ``?user=U``): the contributor bindings, as KFAM lists them;
- ``POST /kfam/v1/bindings`` ``{"user": {"kind": "User", "name": U}, "referredNamespace": NS,
  "RoleRef": {"kind": "ClusterRole", "name": "edit"|"view"}}``: make U a contributor;
- ``DELETE /kfam/v1/bindings`` with the same body: take it away;
- ``GET /kfam/v1/role/clusteradmin?user=U``: whether U is a cluster admin.

A contributor is a RoleBinding ``user-<name, escaped>-clusterrole-<role>`` with annotations ``user`` and
``role`` and ClusterRole ``kubeflow-<role>``, exactly what Kubeflow's KFAM writes, so bindings made with
kubectl show up here and the other way round. Who may do what is the authorization layer's (listing needs
``list rolebindings`` in the namespace, adding ``create``, removing ``delete``), and writes go through the
Api as the caller, so escalation prevention applies: only who holds ``kubeflow-edit`` there may grant it.
"""

from __future__ import annotations

import json
import re

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ketch.machinery.authn import MASTERS, UserInfo
from ketch.machinery.authz import current_user
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError
from ketch.machinery.requestinfo import Attributes

RB = ("rbac.authorization.k8s.io/v1", "RoleBinding")
ROLES = ("admin", "edit", "view")


def binding_name(user: str, role: str) -> str:
    return f"user-{re.sub(r'[^a-z0-9-]', '-', user.lower())}-clusterrole-{role}"


def _err(code: int, msg: str) -> JSONResponse:
    return JSONResponse({"error": msg, "message": msg, "code": code}, code)


def routes(ctx: Context) -> list[Route]:
    api = ctx.api

    def as_kfam(rb: dict) -> dict | None:
        ann = rb["metadata"].get("annotations") or {}
        if "user" not in ann or "role" not in ann:
            return None
        return {"user": {"kind": "User", "name": ann["user"]}, "referredNamespace": rb["metadata"]["namespace"],
                "RoleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": ann["role"]},
                "status": "Ready"}

    async def bindings(request: Request) -> JSONResponse:
        rd = api.rd(*RB)
        if request.method == "GET":
            ns = request.query_params.get("namespace") or None
            user = request.query_params.get("user")
            out = [b for rb in api.list(rd, ns)["items"] if (b := as_kfam(rb)) and (not user or b["user"]["name"] == user)]
            return JSONResponse({"bindings": out})
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _err(400, "body must be JSON")
        user = ((body.get("user") or {}).get("name") or "") if isinstance(body, dict) else ""
        ns = body.get("referredNamespace") or "" if isinstance(body, dict) else ""
        role = ((body.get("RoleRef") or body.get("roleRef") or {}).get("name") or "") if isinstance(body, dict) else ""
        role = role.removeprefix("kubeflow-")
        if not user or not ns:
            return _err(400, "user.name and referredNamespace are required")
        if role not in ROLES:
            return _err(400, f"RoleRef.name: {role!r} is not one of admin, edit, view")
        name = binding_name(user, role)
        try:
            if request.method == "POST":
                api.create(rd, ns, {"metadata": {"name": name, "namespace": ns, "annotations": {"user": user, "role": role}},
                                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"kubeflow-{role}"},
                                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
            else:
                api.delete(rd, ns, name)
        except StatusError as e:
            return _err(e.code, e.message)
        return JSONResponse({})

    async def clusteradmin(request: Request) -> JSONResponse:
        user = request.query_params.get("user") or ""
        me: UserInfo | None = current_user.get()
        groups = me.groups if me is not None and me.name == user else ()
        everything = Attributes("*", "*", "*", "", "", "")
        return JSONResponse(bool(user) and (MASTERS in groups or ctx.services["authz"].authorize(UserInfo(user, "", tuple(groups)), everything)))

    return [Route("/kfam/v1/bindings", bindings, methods=["GET", "POST", "DELETE"]),
            Route("/kfam/v1/role/clusteradmin", clusteradmin, methods=["GET"])]

