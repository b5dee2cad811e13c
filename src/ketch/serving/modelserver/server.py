"""Start-up of one model server: fetch the model, load it, then serve REST (and gRPC) on loopback.

Loading happens before the port opens, so "the port answers" implies "the model loaded": the controller
and the gateway treat a predictor as ready only when ``/v1/models/<name>`` says so. A model that fails to
fetch or load makes the process exit non-zero with the reason on stderr (``kubectl logs`` shows it), so a
bad revision never takes traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

from ketch.serving.modelserver.metrics import Metrics
from ketch.serving.modelserver.model import Model
from ketch.serving.modelserver.reqlog import LoggerMetrics, RequestLogger
from ketch.serving.modelserver.rest import ModelServerApp, Registry

log = logging.getLogger("ketch.serving.modelserver")
# What the kubelet says the Pod's servers bind to: loopback on the host network, every address of the Pod's own
# network namespace when it has one (KETCH_POD_NETWORK=netns), where the gateway reaches it at the podIP.
BIND = os.environ.get("KETCH_BIND_HOST") or "127.0.0.1"
GUESS = [((".joblib", ".pkl", ".pickle"), "sklearn"), ((".onnx",), "onnx"), ((".pt", ".pth", ".pt2"), "pytorch"),
         ((".ubj",), "xgboost"), (("model.py",), "custom")]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ketch.serving.modelserver", description="ketch's model server (KServe V1/V2 REST and gRPC)")
    a = p.add_argument
    a("--model-name", "--model_name", required=True)
    a("--model-dir", "--model_dir", default="/mnt/models", help="where the model is (or is fetched to)")
    a("--storage-uri", "--storage_uri", default=None, help="fetch the model from here into --model-dir first")
    a("--model-format", "--model_format", default=None, help="sklearn, xgboost, lightgbm, onnx, pytorch, custom (guessed from files if unset)")
    a("--model-class", "--model_class", default=None, help="module:Class of a custom Model (the model dir is on sys.path)")
    a("--http-port", "--http_port", type=int, default=8080)
    a("--grpc-port", "--grpc_port", type=int, default=0, help="0: no gRPC server")
    a("--reuse-port", action="store_true",
      help="bind the HTTP port with SO_REUSEPORT, so replicas on one host share it and the kernel spreads connections")
    a("--max-batch-size", type=int, default=0, help="adaptive batching: most rows per predict call (0/1: off)")
    a("--max-latency", type=float, default=500.0, help="adaptive batching: most ms a request waits to be merged")
    a("--logger-url", default=None, help="log requests/responses as CloudEvents to this URL, or as JSON lines to a file")
    a("--logger-mode", default="all", choices=["all", "request", "response"])
    a("--logger-batch-size", type=int, default=1, help="HTTP sinks: events per POST (>1: CloudEvents batched content mode)")
    a("--logger-batch-interval", type=float, default=1.0, help="HTTP sinks: most seconds an event waits for its batch to fill")
    a("--logger-queue-size", type=int, default=0, help="most log events queued or being delivered (default 10000); more are dropped")
    a("--logger-agent", action="store_true", help="deliver to an HTTP sink from a child process (logagent.py), not the model server's own")
    a("--logger-metadata-headers", default="", help="comma-separated request headers sent along as the events' metadata")
    a("--predictor-host", "--predictor_host", default=None, help="transformer: the predictor to forward to")
    a("--protocol", default="v1", help="transformer: the predictor's protocol")
    a("--no-access-log", action="store_true")
    a("--service-name", default="")
    a("--namespace", default="")
    a("--component", default="predictor")
    return p


def guess_format(model_dir: str) -> str:
    names = []
    for _root, _d, files in os.walk(model_dir):
        names.extend(files)
    if os.path.isfile(model_dir):
        names = [os.path.basename(model_dir)]
    for suffixes, fmt in GUESS:
        if any(n.endswith(suffixes) for n in names):
            return fmt
    if any(n.endswith(".bst") for n in names):
        return "xgboost"
    raise SystemExit(f"cannot tell the model format of {model_dir} (files: {names[:10]}); pass --model-format")


def build_model(args: argparse.Namespace, model_dir: str) -> Model:
    from ketch.serving.modelserver.formats import create
    from ketch.serving.modelserver.formats.custom import build, load_class

    if args.model_class or (args.model_format or "").lower() in ("custom", "python") or args.predictor_host:
        cls = load_class(args.model_class, model_dir)
        m = build(cls, args.model_name, model_dir, args.predictor_host)
        m.protocol = args.protocol
        return m
    fmt = args.model_format or guess_format(model_dir)
    return create(fmt, args.model_name, model_dir)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    _mark_ready(False)  # a restarted container is not ready until it has loaded again
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    model_dir = args.model_dir
    try:
        if args.storage_uri:
            from ketch.serving.modelserver.storage import fetch

            log.info("fetching %s", args.storage_uri)
            model_dir = fetch(args.storage_uri, args.model_dir)
        model = build_model(args, model_dir)
        model.load()
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the reason goes to the Pod's log
        log.error("cannot load model %s from %s: %s: %s", args.model_name, args.storage_uri or model_dir, type(e).__name__, e)
        sys.exit(1)
    if not model.ready:
        log.error("model %s: load() did not set ready", args.model_name)
        sys.exit(1)
    log.info("model %s loaded (%s)", args.model_name, type(model).__name__)
    run(model, args)


def run(model: Model, args: argparse.Namespace) -> None:
    import uvicorn


    metrics = Metrics()
    reg = Registry(metrics)
    reg.add(model, args.max_batch_size, args.max_latency)
    rl = None
    if args.logger_url:
        rl = RequestLogger(args.logger_url, args.logger_mode, model.name, args.service_name, args.namespace, args.component,
                           batch_size=args.logger_batch_size, batch_interval=args.logger_batch_interval,
                           metadata_headers=[h for h in args.logger_metadata_headers.split(",") if h], metrics=LoggerMetrics(metrics.registry),
                           queue_size=args.logger_queue_size, agent=args.logger_agent)
    app = ModelServerApp(reg, access_log=not args.no_access_log, request_logger=rl)
    try:
        import uvloop  # noqa: F401

        loop_kind = "uvloop"
    except ImportError:
        loop_kind = "asyncio"
    config = uvicorn.Config(app, host=BIND, port=args.http_port, loop=loop_kind, http="httptools", lifespan="off",
                            access_log=False, log_level="warning", backlog=2048)
    server = uvicorn.Server(config)

    async def serve() -> None:
        grpc_server = None
        if args.grpc_port:
            from ketch.serving.modelserver import grpc_server as gs

            grpc_server = gs.start(app, asyncio.get_running_loop(), args.grpc_port)
        log.info("serving %s on http://%s:%d%s", model.name, BIND, args.http_port, f" and grpc {BIND}:{args.grpc_port}" if args.grpc_port else "")
        try:
            sockets = [_reuse_port_socket(args.http_port)] if args.reuse_port else None
            _mark_ready(True)  # bound and listening: the kubelet's exec probe of this replica passes from now
            await server.serve(sockets=sockets)
        finally:
            _mark_ready(False)
            if grpc_server is not None:
                grpc_server.stop(0)

    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(serve())
    else:
        asyncio.run(serve())


def _reuse_port_socket(port: int) -> socket.socket:
    """The HTTP socket of a replica that shares its port with the other replicas of a Deployment.

    Pods share the host's network (docs/services.md), so a Deployment's replicas, stamped from one
    template, all get one port; with SO_REUSEPORT each binds it once its model has loaded and the kernel
    spreads new connections over those bound, so only loaded replicas receive traffic."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((BIND, port))
    s.listen(2048)
    s.set_inheritable(True)
    return s


def _mark_ready(ready: bool) -> None:
    """Create or remove ``$KETCH_READY_FILE``: with replicas sharing a port, an HTTP probe of that port may
    be answered by another replica, so the raw-mode Deployment probes this file instead."""
    path = os.environ.get("KETCH_READY_FILE")
    if not path:
        return
    if ready:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


if __name__ == "__main__":
    main()
