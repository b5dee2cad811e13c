"""The TokenRequest API: ``POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token``.

``kubectl create token SA`` (and client-go's projected-token machinery) send an
``authentication.k8s.io/v1`` TokenRequest and get it back with ``status.token`` and
``status.expirationTimestamp``. The token is a ServiceAccount JWT from ``machinery.authn``; a
``boundObjectRef`` to a Pod binds it to that Pod's lifetime, as in Kubernetes.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ketch.kinds.definitions import ResourceDefinition
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError, bad_request, method_not_allowed


def _invalid(field: str, msg: str) -> StatusError:
    return StatusError(422, "Invalid", f"TokenRequest.authentication.k8s.io is invalid: {field}: {msg}",
                       {"kind": "TokenRequest", "group": "authentication.k8s.io",
                        "causes": [{"reason": "FieldValueInvalid", "message": msg, "field": field}]})


def register_token_request(ctx: Context) -> None:
    from ketch.server.k8s import json_response, read_body

    api = ctx.api

    async def token(request: Request, rd: ResourceDefinition, ns: str, name: str) -> Response:
        if request.method != "POST":
            raise method_not_allowed("the server does not allow this method on the requested resource (serviceaccounts/token)")
        body: Any = await read_body(request) or {}
        if not isinstance(body, dict):
            raise bad_request("the body of a TokenRequest must be an object")
        sa = api.get(rd, ns, name)  # 404 in Kubernetes' words when the account does not exist
        spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
        exp_s = spec.get("expirationSeconds", 3600)
        if not isinstance(exp_s, int) or isinstance(exp_s, bool):
            raise _invalid("spec.expirationSeconds", "must be an integer")
        if exp_s < 600:
            raise _invalid("spec.expirationSeconds", "may not specify a duration less than 10 minutes")
        if exp_s > 2 ** 32:
            raise _invalid("spec.expirationSeconds", "may not specify a duration larger than 2^32 seconds")
        auds = spec.get("audiences")
        if auds is not None and (not isinstance(auds, list) or not all(isinstance(a, str) for a in auds)):
            raise _invalid("spec.audiences", "must be a list of strings")
        pod = None
        ref = spec.get("boundObjectRef")
        if isinstance(ref, dict) and ref:
            if ref.get("kind") != "Pod":
                raise _invalid("spec.boundObjectRef.kind", f'"{ref.get("kind")}": ketch binds tokens to Pods only')
            p = api.try_get(api.rd("v1", "Pod"), ns, str(ref.get("name") or ""))
            if p is None or (ref.get("uid") and ref["uid"] != p["metadata"]["uid"]):
                raise _invalid("spec.boundObjectRef", f'pod "{ref.get("name")}" not found')
            pod = (p["metadata"]["name"], p["metadata"]["uid"])
        tok, exp = ctx.services["authn"].service_account_token(ns, name, sa["metadata"]["uid"], pod=pod,
                                                                 expiration_seconds=exp_s, audiences=auds or None)
        out = {
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            "spec": {"audiences": auds or ["https://kubernetes.default.svc.cluster.local"], "expirationSeconds": exp_s,
                     "boundObjectRef": ref or None},
            "status": {"token": tok, "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))},
        }
        return json_response(out, 201)

    ctx.services.setdefault("subresources", {})[("/serviceaccounts", "token")] = token
