"""gRPC through the gateway: the Open Inference Protocol's ``inference.GRPCInferenceService`` on a port of
ketch's (``KETCH_SERVING_GRPC_PORT``; unset: no gRPC gateway), proxied to the predictor replicas that
serve gRPC (``protocolVersion: grpc-v2``), by the same traffic split as HTTP.

uvicorn speaks no HTTP/2, so gRPC cannot share ketch's HTTP port; and gRPC servers in Python do not see
``:authority``, which KServe's ingress routes on. A call names its InferenceService by the model name in
the request (ketch's model servers serve the model under the InferenceService's name) and its namespace
by the metadata ``x-ketch-namespace`` or a ``host`` of the form ``{name}.{namespace}.<domain>`` (default:
``default``). Messages are forwarded as bytes (parsed only for the model name). ``ServerLive`` and
``ServerReady`` are answered by the gateway itself.

Authentication: when ``KETCH_HOME/tokens.csv`` exists, a call must carry ``authorization: Bearer <token>``
of a token listed there, as on ketch's HTTP port.
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


def _tokens(home: Path) -> set[str] | None:
    p = home / "tokens.csv"
    if not p.exists():
        return None
    return {ln.split(",", 1)[0].strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")}


class GrpcGateway:
    def __init__(self, router: Router, home: Path) -> None:
        self.router = router
        self.home = home
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
            allowed = _tokens(gw.home)
            if allowed is not None:
                auth = md.get("authorization", "")
                if not auth.startswith("Bearer ") or auth[7:].strip() not in allowed:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a bearer token of ketch's is required")
            name = method.rsplit("/", 1)[1]
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

        gw = GrpcGateway(ctx.services.setdefault("serving-router", Router()), Path(ctx.settings.home))
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
