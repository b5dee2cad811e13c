"""The review APIs: answered from the authorizer, never stored.

- ``authorization.k8s.io/v1`` ``SelfSubjectAccessReview`` (``kubectl auth can-i``), ``SubjectAccessReview``
  (may a given user...?), ``LocalSubjectAccessReview`` (the same, in one namespace), and
  ``SelfSubjectRulesReview`` (``kubectl auth can-i --list``: the caller's rules in a namespace);
- ``authentication.k8s.io/v1`` ``SelfSubjectReview`` (``kubectl auth whoami``).

Each is a create-only kind (``kinds/builtin/rbac.py``); the caller's right to create it is checked by the
authorization layer like any other request (every authenticated user may create the Self* ones).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ketch.kinds.definitions import ResourceDefinition
from ketch.machinery.authn import UserInfo
from ketch.machinery.authz import Authorizer, current_user
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError, bad_request, invalid
from ketch.machinery.requestinfo import Attributes
from ketch.machinery.validation import validate


def _invalid(kind: str, group: str, field: str, msg: str) -> StatusError:
    return StatusError(422, "Invalid", f'{kind}.{group} is invalid: {field}: {msg}',
                       {"kind": kind, "group": group, "causes": [{"reason": "FieldValueInvalid", "message": msg, "field": field}]})


def _attributes(spec: dict, kind: str) -> Attributes:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if bool(ra) == bool(nra):
        raise _invalid(kind, "authorization.k8s.io", "spec.resourceAttributes",
                       "exactly one of nonResourceAttributes or resourceAttributes must be specified")
    if nra:
        return Attributes(verb=nra.get("verb") or "", path=nra.get("path") or "")
    return Attributes(verb=ra.get("verb") or "", api_group=ra.get("group") or "", resource=ra.get("resource") or "",
                      subresource=ra.get("subresource") or "", namespace=ra.get("namespace") or "", name=ra.get("name") or "",
                      api_version=ra.get("version") or "")


def register_reviews(ctx: Context, authorizer: Authorizer) -> None:
    from ketch.server.k8s import json_response, read_body

    def caller() -> UserInfo:
        u = current_user.get()
        if u is None:
            raise StatusError(401, "Unauthorized", "Unauthorized")
        return u

    async def body_of(request: Request, rd: ResourceDefinition) -> dict:
        b: Any = await read_body(request) or {}
        if not isinstance(b, dict):
            raise bad_request("the body of a review must be an object")
        _, found = validate(rd.versions[0].schema, b)
        if found.errors:
            raise invalid(rd, "", found.errors)
        return b

    def reply(rd: ResourceDefinition, b: dict, status: dict, ns: str = "") -> Response:
        md = {"creationTimestamp": None}
        if ns:
            md["namespace"] = ns
        return json_response({"kind": rd.kind, "apiVersion": rd.api_version("v1"), "metadata": md,
                              "spec": b.get("spec") or {}, "status": status}, 201)

    def decide(user: UserInfo, a: Attributes) -> dict:
        ok = authorizer.authorize(user, a)
        return {"allowed": ok, "reason": "allowed by RBAC" if ok else ""}

    async def ssar(request: Request, rd: ResourceDefinition, ns: str) -> Response:
        b = await body_of(request, rd)
        return reply(rd, b, decide(caller(), _attributes(b.get("spec") or {}, rd.kind)))

    def spec_user(spec: dict) -> UserInfo:
        if not spec.get("user") and not spec.get("groups"):
            raise StatusError(422, "Invalid", "SubjectAccessReview.authorization.k8s.io is invalid: spec.user: Invalid value: \"\": "
                              "at least one of user or group must be specified", {})
        return UserInfo(spec.get("user") or "", spec.get("uid") or "", tuple(spec.get("groups") or ()))

    async def sar(request: Request, rd: ResourceDefinition, ns: str) -> Response:
        b = await body_of(request, rd)
        spec = b.get("spec") or {}
        return reply(rd, b, decide(spec_user(spec), _attributes(spec, rd.kind)))

    async def lsar(request: Request, rd: ResourceDefinition, ns: str) -> Response:
        b = await body_of(request, rd)
        spec = b.get("spec") or {}
        a = _attributes(spec, rd.kind)
        if a.is_resource and a.namespace != ns:
            raise _invalid(rd.kind, "authorization.k8s.io", "spec.resourceAttributes.namespace",
                           f'must match the namespace of the request "{ns}"')
        return reply(rd, b, decide(spec_user(spec), a), ns)

    async def ssrr(request: Request, rd: ResourceDefinition, ns: str) -> Response:
        b = await body_of(request, rd)
        namespace = (b.get("spec") or {}).get("namespace") or ""
        rules = authorizer.rules_for(caller(), namespace)
        res, nonres = [], []
        for r in rules:
            d = r.to_dict()
            (nonres if r.non_resource_urls else res).append(d)
        return reply(rd, b, {"resourceRules": res, "nonResourceRules": nonres, "incomplete": False})

    async def whoami(request: Request, rd: ResourceDefinition, ns: str) -> Response:
        await body_of(request, rd)
        return json_response({"kind": rd.kind, "apiVersion": rd.api_version("v1"),
                              "metadata": {"creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                              "status": {"userInfo": caller().to_status()}}, 201)

    creators = ctx.services.setdefault("creators", {})
    for plural, fn in (("selfsubjectaccessreviews", ssar), ("subjectaccessreviews", sar), ("localsubjectaccessreviews", lsar),
                       ("selfsubjectrulesreviews", ssrr)):
        creators[f"authorization.k8s.io/{plural}"] = fn
    creators["authentication.k8s.io/selfsubjectreviews"] = whoami
