"""``/notebook/<namespace>/<name>/...`` on ketch's port, to the notebook's server: HTTP and WebSocket.

On Kubeflow an Istio VirtualService routes this prefix to the notebook's Service; here the same path is
proxied to the port the notebook Pod listens on (its ``notebooks.kubeflow.org/port`` annotation), keeping
the path, since the server's base URL is ``NB_PREFIX``. WebSockets (Jupyter's kernel channels, terminals)
are relayed frame by frame in both directions, with the client's subprotocols and cookies passed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ketch.machinery.client import Client
from ketch.machinery.context import Context
from ketch.notebooks.controller import POD, PORT_ANNOTATION, pod_name

log = logging.getLogger(__name__)
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host"}
WS_HEADERS = {"cookie", "authorization", "x-xsrftoken"}


class NotebookProxy:
    def __init__(self, ctx: Context) -> None:
        self.client = Client(ctx.api, manager="ketch-notebook-proxy")
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0), follow_redirects=False)

    def port(self, ns: str, name: str) -> int | None:
        pod = self.client.get(POD, ns, pod_name(name))
        if pod is None or (pod.get("status") or {}).get("phase") != "Running":
            return None
        p = (pod["metadata"].get("annotations") or {}).get(PORT_ANNOTATION)
        return int(p) if p else None

    async def http_proxy(self, request: Request) -> Response:
        ns, name = request.path_params["namespace"], request.path_params["name"]
        if "rest" not in request.path_params:
            return RedirectResponse(str(request.url.replace(path=request.url.path + "/")), status_code=302)
        port = self.port(ns, name)
        if port is None:
            return JSONResponse({"message": f"notebook {ns}/{name} is not running"}, status_code=503)
        url = f"http://127.0.0.1:{port}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP]
        headers.append(("x-forwarded-host", request.headers.get("host", "")))
        req = self.http.build_request(request.method, url, headers=headers, content=await request.body())
        try:
            resp = await self.http.send(req, stream=True)
        except httpx.HTTPError as e:
            return JSONResponse({"message": f"notebook {ns}/{name} did not answer: {e}"}, status_code=502)
        out = [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in HOP]
        r = StreamingResponse(resp.aiter_raw(), status_code=resp.status_code, background=BackgroundTask(resp.aclose))
        r.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in out]
        return r

    async def ws_proxy(self, ws: WebSocket) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        ns, name = ws.path_params["namespace"], ws.path_params["name"]
        port = self.port(ns, name)
        if port is None:
            await ws.close(code=1013, reason=f"notebook {ns}/{name} is not running")
            return
        query = ws.scope.get("query_string", b"").decode()
        url = f"ws://127.0.0.1:{port}{ws.url.path}" + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in ws.headers.items() if k.lower() in WS_HEADERS]
        protocols = list(ws.scope.get("subprotocols") or [])
        try:
            upstream = await connect(url, additional_headers=headers, subprotocols=protocols or None, max_size=None,  # type: ignore[arg-type]
                                     origin=ws.headers.get("origin"))  # type: ignore[arg-type]
        except Exception as e:  # noqa: BLE001 - refused upgrade, connection error: end the client's socket
            log.info("notebook %s/%s: websocket to %s failed: %s", ns, name, url, e)
            await ws.close(code=1011)
            return
        await ws.accept(subprotocol=upstream.subprotocol)

        async def to_server() -> None:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                await upstream.send(msg["text"] if msg.get("text") is not None else msg.get("bytes") or b"")

        async def to_client() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for m in upstream:
                    if isinstance(m, str):
                        await ws.send_text(m)
                    else:
                        await ws.send_bytes(m)

        tasks = [asyncio.create_task(to_server()), asyncio.create_task(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            with contextlib.suppress(Exception):
                await upstream.close()
            with contextlib.suppress(Exception, WebSocketDisconnect):
                await ws.close()

    def routes(self) -> list[BaseRoute]:
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        return [
            Route("/notebook/{namespace}/{name}", self.http_proxy, methods=methods),
            Route("/notebook/{namespace}/{name}/{rest:path}", self.http_proxy, methods=methods),
            WebSocketRoute("/notebook/{namespace}/{name}/{rest:path}", self.ws_proxy),
        ]

    async def close(self) -> None:
        await self.http.aclose()
