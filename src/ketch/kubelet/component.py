"""Plugs a kubelet into ketch: registers the Node, runs Pods, serves ``pods/log``. The local kubelet by
default; ``KETCH_KUBELET=ray`` runs the containers on a Ray cluster instead (ray_kubelet.py).

``KETCH_DISABLE=kubelet`` leaves all of it out (an API-only server, or a machine whose Pods another
kubelet runs).
"""

from __future__ import annotations

import datetime as dt
import re

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ketch.kinds.definitions import ResourceDefinition
from ketch.kinds.meta import parse_time
from ketch.kubelet import logs
from ketch.kubelet.base import Kubelet
from ketch.kubelet.local import LocalKubelet
from ketch.machinery.context import Context
from ketch.machinery.errors import StatusError, bad_request
from ketch.machinery.params import query_bool


def log_handler(ctx: Context, kubelet: Kubelet):  # noqa: ANN201
    async def handler(request: Request, rd: ResourceDefinition, namespace: str, name: str) -> Response:
        if request.method != "GET":
            raise StatusError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        pod = ctx.api.get(rd, namespace, name)
        q = request.query_params
        spec = pod.get("spec") or {}
        names = [c["name"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
        container = q.get("container") or ""
        if not container:
            mains = [c["name"] for c in spec.get("containers") or []]
            default = (pod["metadata"].get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
            if default in names:
                container = default
            elif len(mains) == 1:
                container = mains[0]
            else:
                raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(mains)}]")
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        opts = logs.LogOptions(
            previous=query_bool(q, "previous"),
            follow=query_bool(q, "follow"),
            timestamps=query_bool(q, "timestamps"),
        )
        try:
            if q.get("tailLines"):
                opts.tail_lines = int(q["tailLines"])
            if q.get("limitBytes"):
                opts.limit_bytes = int(q["limitBytes"])
            if q.get("sinceSeconds"):
                opts.since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(q["sinceSeconds"]))
        except ValueError as e:
            raise bad_request(f"invalid log options: {e}") from e
        if q.get("sinceTime"):
            opts.since = parse_time(q["sinceTime"])
            if opts.since is None:
                raise bad_request(f"sinceTime: invalid value {q['sinceTime']!r}")
        runs = logs.runs(kubelet.log_dir(namespace, name, container))
        if not runs and _ended(pod, container) and await kubelet.restore_logs(pod, container):
            runs = logs.runs(kubelet.log_dir(namespace, name, container))  # ran elsewhere: the shared store's copy
        if opts.previous and len(runs) < 2:
            raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        if not runs:
            st = pod.get("status") or {}
            reason = "ContainerCreating"
            for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
                if cs.get("name") == container and (cs.get("state") or {}).get("waiting"):
                    reason = cs["state"]["waiting"].get("reason") or reason
            if st.get("phase") == "Pending" and not spec.get("nodeName"):
                reason = "ContainerCreating"
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        gen = kubelet.read_log(namespace, name, container, opts)

        async def body():
            async for chunk in gen:
                yield chunk.encode()

        return StreamingResponse(body(), media_type="text/plain")

    return handler


def _ended(pod: dict, container: str) -> bool:
    """Whether the container has a run that ended (so its log may be in the shared store's archive)."""
    st = pod.get("status") or {}
    if st.get("phase") in ("Succeeded", "Failed"):
        return True
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        if cs.get("name") == container:
            return bool((cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated"))
    return False


_POD_STREAM = re.compile(r"^/api/v1/namespaces/[^/]+/pods/[^/]+/(exec|attach|portforward)$")
_POD_LOG = re.compile(r"^/api/v1/namespaces/[^/]+/pods/[^/]+/log$")


def _streams(scope: dict) -> bool:
    """kubectl exec, attach, port-forward: the leader's kubelet runs the processes they reach."""
    return scope["type"] == "websocket" and _POD_STREAM.match(scope["path"]) is not None


def _log(scope: dict) -> bool:
    return scope["type"] == "http" and _POD_LOG.match(scope["path"]) is not None


def _pod_metrics(scope: dict) -> bool:
    """metrics.k8s.io (kubectl top): samples the leader's kubelet takes."""
    return scope["type"] == "http" and scope["path"].startswith("/apis/metrics.k8s.io/")


def setup(ctx: Context) -> None:
    import os

    if os.environ.get("KETCH_KUBELET", "local") == "ray":
        from ketch.kubelet.ray_kubelet import (
            RayKubelet,  # ray is an optional extra: imported only when chosen
        )

        kubelet: Kubelet = RayKubelet(ctx)
    else:
        kubelet = LocalKubelet(ctx)
    ctx.services["kubelet"] = kubelet
    from ketch.kubelet.network import NamespacedNetwork

    if isinstance(kubelet.network, NamespacedNetwork):  # Services get ClusterIPs, a proxy and names in Pods
        from ketch.kubelet.servicenet import ServiceProxy

        proxy = ServiceProxy(ctx, kubelet.network)
        proxy.install()
        ctx.add_task(proxy.run)
    from ketch.kubelet.prometheus import register

    register(kubelet)  # container CPU and memory on /metrics
    if kubelet.local_processes:
        from starlette.routing import WebSocketRoute

        from ketch.kubelet import port_forward, remote_command

        async def exec_ws(ws):  # noqa: ANN001, ANN202
            await remote_command.serve(ws, kubelet)

        async def portforward_ws(ws):  # noqa: ANN001, ANN202
            await port_forward.serve(ws, kubelet)

        async def attach_ws(ws):  # noqa: ANN001, ANN202
            await remote_command.serve_attach(ws, kubelet)

        # kubectl exec and port-forward speak WebSocket; the routes sit before the Kubernetes API's
        ctx.add_routes([
            WebSocketRoute("/api/v1/namespaces/{namespace}/pods/{name}/exec", exec_ws),
            WebSocketRoute("/api/v1/namespaces/{namespace}/pods/{name}/portforward", portforward_ws),
            WebSocketRoute("/api/v1/namespaces/{namespace}/pods/{name}/attach", attach_ws),
        ])
    if kubelet.local_processes:
        from ketch.kubelet import metrics

        sampler = metrics.MetricsSampler(kubelet)
        ctx.services["metrics"] = sampler  # what the HorizontalPodAutoscaler reads
        ctx.add_routes(metrics.routes(sampler))
        ctx.add_task(sampler.run)
    ctx.services.setdefault("subresources", {})[("/pods", "log")] = log_handler(ctx, kubelet)
    # With several ketch processes, these reach the leader's kubelet (server/forward.py); a log is read
    # from the shared home's files here when the leader cannot be reached.
    ctx.forward_to_leader(_streams)
    ctx.forward_to_leader(_log, serve_here_if_unreachable=True)
    if kubelet.local_processes:
        ctx.forward_to_leader(_pod_metrics)
    ctx.add_task(kubelet.run)
    ctx.on_shutdown(kubelet.shutdown)
    ctx.on_stand_down(kubelet.stand_down)
