"""``GET /ui/namespaces``: the namespaces the dashboard's caller may see, each with the caller's role there
(``owner``: may manage RoleBindings; ``edit``: may create Pods; ``view``: may list Pods), answered from the
authorizer, so the namespace switcher shows exactly what RBAC allows (Kubeflow's dashboard does the same
with its workgroup API). ``clusterAdmin`` says whether the caller may list every namespace (then the
switcher offers "All namespaces").
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ketch.machinery.authz import current_user
from ketch.machinery.context import Context
from ketch.machinery.requestinfo import Attributes

RBAC = "rbac.authorization.k8s.io"


def routes(ctx: Context) -> list[Route]:
    async def namespaces(request: Request) -> JSONResponse:
        user = current_user.get()
        if user is None:
            return JSONResponse({"error": "Unauthorized"}, 401)
        az = ctx.services["authz"]
        admin = az.authorize(user, Attributes("list", "", "namespaces"))
        out = []
        for ns in sorted(o["metadata"]["name"] for o in ctx.api.store.list("/namespaces")[0]):
            if az.authorize(user, Attributes("create", RBAC, "rolebindings", "", ns)):
                role = "owner"
            elif az.authorize(user, Attributes("create", "", "pods", "", ns)):
                role = "edit"
            elif az.authorize(user, Attributes("list", "", "pods", "", ns)):
                role = "view"
            else:
                continue
            out.append({"name": ns, "role": role})
        return JSONResponse({"user": user.name, "clusterAdmin": admin, "namespaces": out})

    return [Route("/ui/namespaces", namespaces, methods=["GET"])]
