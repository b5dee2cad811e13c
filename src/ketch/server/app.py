"""Assembles one process: store, Api, components (controllers, kubelet, pipelines, serving...), and the
Starlette app that serves them all on one port."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import pkgutil
from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

import ketch
from ketch.config import Settings
from ketch.machinery import quota, rbac_defaults
from ketch.machinery.api import Api
from ketch.machinery.authn import Authenticator
from ketch.machinery.authz import GROUP, Authorizer, current_user
from ketch.machinery.context import Context
from ketch.runtime.leader import ElectionConfig, LeaderElector, default_identity
from ketch.server import health
from ketch.server.auth import AuthMiddleware
from ketch.server.authz import AuthzMiddleware, Lookups
from ketch.server.forward import LeaderForwarder
from ketch.server.k8s import K8sHandler, json_response, openapi_handlers
from ketch.server.limits import BodyLimit
from ketch.server.metrics import ApiMetrics, metrics_endpoint
from ketch.server.reviews import register_reviews
from ketch.server.tokens import register_token_request
from ketch.store import open_store

log = logging.getLogger(__name__)

VERSION = {
    "major": "1",
    "minor": "37",
    "gitVersion": f"v1.37.0+ketch.{ketch.__version__}",
    "gitCommit": "ketch",
    "gitTreeState": "clean",
    "buildDate": "2026-11-01T00:00:00Z",
    "goVersion": "python",
    "compiler": "cpython",
    "platform": "linux/amd64",
}


def discover_components() -> list[str]:
    """Every ketch subpackage with a ``component`` module plugs in; adding one is adding a package."""
    out = []
    for m in pkgutil.iter_modules(ketch.__path__):
        if m.ispkg:
            with contextlib.suppress(ImportError):
                if importlib.util.find_spec(f"ketch.{m.name}.component") is not None:
                    out.append(m.name)
    return sorted(out)


def build_context(settings: Settings) -> Context:
    secure_home(settings)
    if not settings.tls_cert:
        from ketch.server.tls import self_signed

        settings.tls_cert, settings.tls_key = self_signed(settings.home, settings.host)
    store = open_store(settings.db, history=settings.watch_history)
    secure_database(settings)
    feed = getattr(store, "feed", None)
    if feed is not None:  # other ketch processes may write the same database: see their changes too
        feed.start()
    api = Api(store)
    ctx = Context(api=api, settings=settings)
    if settings.elects_leader:
        ctx.election = LeaderElector(api, election_config(settings))
    ctx.services.setdefault("subresources", {})
    ctx.services["authn"] = Authenticator(settings.home, object_uid(api), settings.oidc)
    authorizer = Authorizer(api.store)
    ctx.services["authz"] = authorizer
    api.add_validator(GROUP, "Role", escalation_check(authorizer))
    api.add_validator(GROUP, "ClusterRole", escalation_check(authorizer))
    api.add_validator(GROUP, "RoleBinding", escalation_check(authorizer))
    api.add_validator(GROUP, "ClusterRoleBinding", escalation_check(authorizer))
    api.add_validator("", "Pod", quota.admitter(api.store))
    register_token_request(ctx)
    register_reviews(ctx, authorizer)
    bootstrap(api)
    for name in discover_components():
        if name in settings.disabled:
            continue
        mod = importlib.import_module(f"ketch.{name}.component")
        mod.setup(ctx)
    return ctx


def election_config(settings: Settings) -> ElectionConfig:
    """The Lease this process campaigns for, with the settings' durations (ValueError if they do not fit)."""
    return ElectionConfig(identity=default_identity(settings.port), url=settings.kube_url, lease_duration=settings.leader_elect_lease_duration,
                          renew_deadline=settings.leader_elect_renew_deadline, retry_period=settings.leader_elect_retry_period)


def secure_home(settings: Settings) -> None:
    """KETCH_HOME holds the database (Secrets), tokens, keys, logs and volumes: this user's alone."""
    settings.home.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.home, 0o700)


def secure_database(settings: Settings) -> None:
    if settings.database_url:
        return
    for suffix in ("", "-wal", "-shm"):
        p = Path(settings.db + suffix)
        if p.exists():
            os.chmod(p, 0o600)


def object_uid(api: Api):
    """The lookup the authenticator revokes bound tokens with: the uid of a Pod or ServiceAccount now."""
    rds = {"Pod": api.rd("v1", "Pod"), "ServiceAccount": api.rd("v1", "ServiceAccount")}

    def lookup(kind: str, ns: str, name: str) -> str | None:
        obj = api.try_get(rds[kind], ns, name) if name else None
        return obj["metadata"].get("uid") if obj else None

    return lookup


def escalation_check(authorizer: Authorizer):
    """Admission for Roles and bindings: a request may grant only what its caller holds (403 otherwise)."""

    def check(obj: dict, old: dict | None) -> list:
        authorizer.check_escalation(current_user.get(), obj)
        return []

    return check


def bootstrap(api: Api) -> None:
    """Objects every cluster has: the default and system namespaces, and Kubeflow's CRDs
    (``ketch/kinds/crds/*.yaml``), installed through the same path as ``kubectl apply``."""
    from pathlib import Path

    from ketch.machinery.crds import install_manifests

    rd = api.rd("v1", "Namespace")
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        if api.try_get(rd, "", ns) is None:
            api.create(rd, "", {"metadata": {"name": ns}})
    crd_dir = Path(ketch.__file__).parent / "kinds" / "crds"
    install_manifests(api, sorted(crd_dir.glob("*.yaml")))
    rbac_defaults.ensure(api)


class ResourceRoute(Route):
    """The Kubernetes resource paths (``/api/...``, ``/apis/...``), matched before the other routes by
    prefix: Starlette tries each route's pattern in turn, and with the components' routes ahead of the
    catch-all that was ~6 % of a create's CPU. A path under a prefix that another route serves (the KFP
    REST API, metrics.k8s.io, the model registry) is left to the routes after this one, in their order."""

    def __init__(self, endpoint: Callable, others: list[BaseRoute]) -> None:
        super().__init__("/apis/{rest:path}", endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        prefixes = set()
        for r in others:
            path = getattr(r, "path", "")
            if isinstance(r, Route) and path.startswith(("/api/", "/apis/")):
                prefixes.add(path.split("{", 1)[0])
        self.taken = tuple(sorted(prefixes))

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith("/apis/"):
                rest = path[6:]
            elif path.startswith("/api/"):
                rest = path[5:]
            else:
                return Match.NONE, {}
            if not path.startswith(self.taken):
                if scope["method"] not in self.methods:
                    return Match.PARTIAL, {"endpoint": self.endpoint, "path_params": {"rest": rest}}
                return Match.FULL, {"endpoint": self.endpoint, "path_params": {"rest": rest}}
        return Match.NONE, {}


def build_app(ctx: Context) -> Starlette:
    k8s = K8sHandler(ctx.api, ctx.services["subresources"], ctx.services.get("creators"))

    async def handler(request: Request) -> Response:
        return await k8s(request)
    oa = openapi_handlers(ctx.api)

    async def version(request: Request) -> Response:
        return json_response(VERSION)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        ResourceRoute(handler, ctx.routes),
        Route("/version", version),
        Route("/healthz", healthz),
        Route("/livez", healthz),
        Route("/readyz", health.readyz(ctx.api)),
        Route("/metrics", metrics_endpoint),
        Route("/openapi/v2", oa["v2"]),
        Route("/openapi/v3", oa["v3root"]),
        Route("/openapi/v3/{rest:path}", oa["v3doc"]),
        *ctx.routes,
        Route("/api", handler, methods=["GET"]),
        Route("/apis", handler, methods=["GET"]),
        Route("/api/{rest:path}", handler, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/apis/{rest:path}", handler, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await ctx.start_tasks()
        try:
            yield
        finally:
            await ctx.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    s = ctx.settings
    from ketch.serving.gateway import DOMAIN

    # behind authentication and authorization: only a request this process has let in is relayed
    forwarder = LeaderForwarder(app, ctx.election, ctx.leader_only, s.tls_cert or "")
    ctx.on_shutdown(forwarder.close)
    authz = AuthzMiddleware(forwarder, ctx.services["authz"], Lookups(ctx.api), DOMAIN)
    guard = AuthMiddleware(authz, ctx.services["authn"], s.host, s.allowed_hosts, public=authz.public)
    ctx.services["auth"] = guard
    # outermost: the API's request metrics count every request, refused ones too; then the body limits, so
    # no handler, nor the auth middleware, reads a body past its cap
    return ApiMetrics(BodyLimit(guard))  # type: ignore[return-value]  # ASGI apps in front of the Starlette one


def serve(settings: Settings, banner: Callable[[str], None] | None = None) -> None:
    """Run ketch until stopped; ``banner`` is called with a one-time dashboard login code once the app
    is assembled (``ketch up`` prints the login URL with it)."""
    import uvicorn

    ctx = build_context(settings)
    app = build_app(ctx)
    if banner is not None:
        banner(ctx.services["auth"].login_code())
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
        # wsproto, not websockets: kubectl port-forward offers the subprotocol "SPDY/3.1+portforward.k8s.io",
        # which websockets refuses (not an HTTP token) and Go's servers accept.
        ws="wsproto",
    )
    from ketch.server.listener import Server, tls_context

    server = Server(config, tls_context(str(settings.tls_cert), str(settings.tls_key)), plain_anywhere=settings.insecure)
    try:
        asyncio.run(server.serve())
    finally:
        ctx.api.store.close()
