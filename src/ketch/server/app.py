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
    # What every cluster has, made once: processes started together on one new PostgreSQL take turns
    with api.store.setup_lock():
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


class ResourceFastPath:
    """The Kubernetes resource paths straight to their handler, past Starlette's router and its two
    exception middlewares: each adds a coroutine frame and a ``send`` wrapper to every request and every
    response message (~7 % of a create's CPU), and the handler already answers every error itself, as a
    Status (K8sHandler.__call__). Everything else (lifespan, websockets, the other routes, a method the
    resource paths do not serve) goes through the Starlette app as before."""

    def __init__(self, app: Starlette, route: ResourceRoute, endpoint: Callable) -> None:
        self.app = app
        self.route = route
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            match, child = self.route.matches(scope)
            if match is Match.FULL:
                scope.update(child)
                response = await self.endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


BUILTIN_SUBRESOURCES = ("status", "scale")


def served_series(api: Api, subs: dict) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    """The API metrics' label bound (server/metrics.py ApiMetrics): a request path's group, version,
    resource and subresource as labels only where ketch serves them, blank otherwise, so the request
    series stay as many as the served resources whatever paths clients send."""

    def bound(labels: tuple[str, ...]) -> tuple[str, ...]:
        verb, group, version, resource, sub, scope = labels
        if resource:
            rd = api.registry.lookup(group, version, resource)
            if rd is None:
                return (verb, "", "", "", "", scope)
            if sub and sub not in BUILTIN_SUBRESOURCES and (rd.key, sub) not in subs:
                sub = ""
            return (verb, group, version, resource, sub, scope)
        if group and group not in api.registry.groups():
            return (verb, "", "", "", "", scope)
        if version and not api.registry.in_group_version(group, version):
            version = ""
        return (verb, group, version, "", "", scope)

    return bound


def build_app(ctx: Context) -> Starlette:
    k8s = K8sHandler(ctx.api, ctx.services["subresources"], ctx.services.get("creators"))

    async def handler(request: Request) -> Response:
        return await k8s(request)
    oa = openapi_handlers(ctx.api)

    async def version(request: Request) -> Response:
        return json_response(VERSION)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    resources = ResourceRoute(handler, ctx.routes)
    routes = [
        resources,
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

    # behind authentication and authorization: only a request this process has let in is relayed; in front
    # of the resource fast path, which would answer pod logs and metrics.k8s.io here
    forwarder = LeaderForwarder(ResourceFastPath(app, resources, handler), ctx.election, ctx.leader_only, s.tls_cert or "")
    ctx.on_shutdown(forwarder.close)
    authz = AuthzMiddleware(forwarder, ctx.services["authz"], Lookups(ctx.api), DOMAIN)
    guard = AuthMiddleware(authz, ctx.services["authn"], s.host, s.allowed_hosts, public=authz.public)
    ctx.services["auth"] = guard
    # outermost: the API's request metrics count every request, refused ones too; then the body limits, so
    # no handler, nor the auth middleware, reads a body past its cap
    return ApiMetrics(BodyLimit(guard), served_series(ctx.api, ctx.services["subresources"]))  # type: ignore[return-value]  # ASGI apps in front of the Starlette one


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (uvicorn[standard] brings it), as ``uvicorn.run`` picks
    by default: its transports and callbacks are C, a quarter of a create's CPU on the pure-Python loop
    (docs/benchmarks.md). ``KETCH_EVENT_LOOP=asyncio`` keeps the standard library's."""
    if os.environ.get("KETCH_EVENT_LOOP", "auto") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


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
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(server.serve())
    finally:
        ctx.api.store.close()
