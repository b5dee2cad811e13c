"""A Kubernetes API request as the authorizer sees it: verb, API group, resource, subresource, namespace and
name, or a non-resource URL (kube-apiserver's RequestInfo), computed from the method and path alone.

Verbs follow Kubernetes: GET on a collection is ``list`` (``watch`` with ``?watch=true``), on an object
``get``; POST ``create``; PUT ``update``; PATCH ``patch``; DELETE on an object ``delete``, on a collection
``deletecollection``. A WebSocket upgrade to ``pods/exec`` (or attach, portforward) needs ``create``, as
kube-apiserver does since the websocket upgrade permission check.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

CONNECT_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})
_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class Attributes:
    """What is asked: ``resource`` set for a resource request, ``path`` (and no resource) otherwise."""

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    api_version: str = ""

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def non_resource(method: str, path: str) -> Attributes:
    return Attributes(verb={"GET": "get", "HEAD": "get"}.get(method, method.lower()), path=path)


def from_request(method: str, path: str, watch: bool = False, websocket: bool = False, field_selector: str = "") -> Attributes:
    """The attributes of ``method path`` on the Kubernetes API (``watch``: the query had ``watch=true``;
    ``field_selector``: a ``metadata.name=X`` in it names the object of a list or watch, as client-go's
    informers for one object ask, so a rule with ``resourceNames`` can allow it)."""
    parts = [unquote(p) if "%" in p else p for p in path.strip("/").split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return non_resource(method, path)
    if parts[0] == "api":
        if len(parts) < 3:
            return non_resource(method, path)
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return non_resource(method, path)
        group, version, rest = parts[1], parts[2], parts[3:]
    if rest and rest[0] == "watch":  # the old /api/v1/watch/... form
        watch, rest = True, rest[1:]
        if not rest:
            return non_resource(method, path)
    ns = ""
    if rest[0] == "namespaces" and len(rest) >= 2:
        ns = rest[1]
        if len(rest) == 2 or (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")):
            rest = ["namespaces", *rest[1:]]  # the Namespace object itself (and its subresources)
        else:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if websocket:
        method = "GET"
    by_path = bool(name)
    if not name and method == "GET" and field_selector:
        for term in field_selector.split(","):
            k, _, v = term.partition("=")
            if k.strip() == "metadata.name" and v and not v.startswith("="):
                name = v.strip()
    if method in ("GET", "HEAD"):
        verb = "watch" if watch else ("get" if by_path else "list")
        if websocket and sub in CONNECT_SUBRESOURCES:
            verb = "create"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _METHOD_VERBS.get(method, method.lower())
    return Attributes(verb=verb, api_group=group, resource=resource, subresource=sub, namespace=ns, name=name,
                      path=path, api_version=version)
