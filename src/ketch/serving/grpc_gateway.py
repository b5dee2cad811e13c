"""gRPC through the gateway: the Open Inference Protocol's ``inference.GRPCInferenceService`` on a port of
ketch's (``KETCH_SERVING_GRPC_PORT``; unset: no gRPC gateway), proxied to the predictor replicas that
serve gRPC (``protocolVersion: grpc-v2``), by the same traffic split as HTTP.

uvicorn speaks no HTTP/2, so gRPC cannot share ketch's HTTP port; and gRPC servers in Python do not see
``:authority``, which KServe's ingress routes on. A call names its InferenceService by the model name in
the request (ketch's model servers serve the model under the InferenceService's name) and its namespace
by the metadata ``x-ketch-namespace`` or a ``host`` of the form ``{name}.{namespace}.<domain>`` (default:
``default``). Messages are forwarded as bytes (parsed only for the model name). ``ServerLive`` and
``ServerReady`` are answered by the gateway itself.

Authentication and authorization are ketch's own, as on its HTTP port: a call carries
``authorization: Bearer <token>`` (any token ketch's authenticator accepts: a static user, a ServiceAccount)
and its identity needs ``get`` on the InferenceService (RBAC), unless the InferenceService is public.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ketch.serving.router import Router

log = logging.getLogger(__name__)
SERVICE = "/inference.GRPCInferenceService/"
ROUTED = ("ModelInfer", "ModelReady", "ModelMetadata")
DOMAIN = os.environ.get("KETCH_SERVING_DOMAIN", "localhost")


# (bearer token, namespace, name) -> None if allowed, else (grpc status name, message)
Guard = Callable[[str, str, str], tuple[str, str] | None]


class GrpcGateway:
    def __init__(self, router: Router, home: Path, guard: Guard | None = None) -> None:
        self.router = router
        self.home = home
        self.guard = guard
        self.channels: dict[str, Any] = {}

    def _namespace(self, md: dict[str, str]) -> str:
        if md.get("x-ketch-namespace"):
            return md["x-ketch-namespace"]
        host = md.get("host", "").rsplit(":", 1)[0]
        if host.endswith("." + DOMAIN):
            parts = host[: -len(DOMAIN) - 1].split(".")
            if len(parts) == 2:
                return parts[1]
        return "default"

    def handler(self) -> Any:
        import grpc

        from ketch.serving.modelserver.oip import open_inference_pb2 as pb

        gw = self

        async def call(method: str, raw: bytes, context: Any) -> bytes:
            md = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            auth = md.get("authorization", "")
            token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            name = method.rsplit("/", 1)[1]
            if gw.guard is not None and name in ROUTED:
                ns_ = gw._namespace(md)
                model_ = pb.ModelReadyRequest.FromString(raw).name
                refused = gw.guard(token, ns_, model_)
                if refused is not None:
                    await context.abort(getattr(grpc.StatusCode, refused[0]), refused[1])
            elif gw.guard is not None and gw.guard(token, "", "") is not None and name not in ("ServerLive", "ServerReady"):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a bearer token of ketch's is required")
            if name == "ServerLive":
                return pb.ServerLiveResponse(live=True).SerializeToString()
            if name == "ServerReady":
                return pb.ServerReadyResponse(ready=True).SerializeToString()
            if name not in ROUTED:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not routed by the gateway")
            model = pb.ModelReadyRequest.FromString(raw).name  # field 1 is the model name in all three
            ns = gw._namespace(md)
            route = gw.router.routes.get((ns, model))
            if route is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"InferenceService {ns}/{model} not found")
            comp = route.entry if route.entry != "transformer" else "predictor"
            rev, ep = gw.router.pick(ns, model, comp, grpc=True)
            if ep is None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"no ready gRPC replica of {ns}/{model} (protocolVersion: grpc-v2 serves gRPC)")
            ch = gw.channels.get(ep)
            if ch is None:
                ch = gw.channels[ep] = grpc.aio.insecure_channel(ep)
            fwd = [(k, v) for k, v in context.invocation_metadata() if k not in ("authorization", "host") and not k.startswith(":")]
            stats = gw.router.stat(ns, model, comp, rev)
            stats.start()
            try:
                out = await ch.unary_unary(method)(raw, metadata=fwd, timeout=route.timeout)
            except grpc.aio.AioRpcError as e:
                await context.abort(e.code(), e.details() or "")
            finally:
                stats.end()
            await context.send_initial_metadata((("x-ketch-revision", rev),))
            return out

        class Generic(grpc.GenericRpcHandler):
            def service(self, details: Any) -> Any:
                if not details.method.startswith(SERVICE):
                    return None
                m = details.method

                async def unary(raw: bytes, context: Any) -> bytes:
                    return await call(m, raw, context)

                return grpc.unary_unary_rpc_method_handler(unary)

        return Generic()


def _factory(ctx: Any) -> Callable[[], Coroutine[Any, Any, None]]:
    port = os.environ.get("KETCH_SERVING_GRPC_PORT")

    async def serve() -> None:
        if not port:
            return
        import grpc

        gw = GrpcGateway(ctx.services.setdefault("serving-router", Router()), Path(ctx.settings.home), _guard(ctx))
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((gw.handler(),))
        server.add_insecure_port(f"{ctx.settings.host}:{port}")
        await server.start()
        log.info("gRPC gateway on %s:%s", ctx.settings.host, port)
        try:
            await server.wait_for_termination()
        finally:
            await server.stop(1)
            for ch in gw.channels.values():
                await ch.close()

    return serve


TASKS = [_factory]


def _guard(ctx: Any) -> Guard:
    """The HTTP gateway's rules for gRPC: authenticated by ketch's authenticator, authorized by RBAC as
    ``get`` on the InferenceService (public InferenceServices need no token)."""
    from ketch.machinery.requestinfo import Attributes

    authn, authz = ctx.services["authn"], ctx.services.get("authz")
    isvc = ("serving.kserve.io/v1beta1", "InferenceService")

    def guard(token: str, ns: str, name: str) -> tuple[str, str] | None:
        if ns and name:
            obj = ctx.api.try_get(ctx.api.rd(*isvc), ns, name)
            if obj is not None and ((obj["metadata"].get("annotations") or {}).get("serving.ketch.io/public") == "true"):
                return None
        user = authn.authenticate(token) if token else None
        if user is None:
            return ("UNAUTHENTICATED", "a bearer token of ketch's is required")
        if not (ns and name) or authz is None:
            return None
        if not authz.authorize(user, Attributes("get", "serving.kserve.io", "inferenceservices", "", ns, name)):
            return ("PERMISSION_DENIED", f'User "{user.name}" cannot get resource "inferenceservices" in API group '
                                         f'"serving.kserve.io" in the namespace "{ns}"')
        return None

    return guard
