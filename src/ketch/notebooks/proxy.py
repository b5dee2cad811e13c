"""``/notebook/<namespace>/<name>/...`` on ketch's port, to the notebook's server: HTTP and WebSocket.

On Kubeflow an Istio VirtualService routes this prefix to the notebook's Service; here the same path is
proxied to the port the notebook Pod listens on (its ``notebooks.kubeflow.org/port`` annotation), keeping
the path, since the server's base URL is ``NB_PREFIX``. WebSockets (Jupyter's kernel channels, terminals)
are relayed frame by frame in both directions, with the client's subprotocols and cookies passed on.

ketch's own authentication has already let the caller in (server/auth.py); the notebook server has a
token of its own (the ``<name>-jupyter-token`` Secret) that the proxy adds to each request, so a browser
never learns it and no other local user can use the notebook's port. ketch's credentials (its bearer
token, its session cookie) never reach the notebook, and nothing is kept between requests: the proxy
holds no cookie jar, so one user's Jupyter cookies are never sent for another. The Origin the notebook
sees is its own (ketch checked the browser's), so Jupyter's same-origin checks pass without
``allow_origin=*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import logging

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ketch.machinery.client import Client
from ketch.machinery.context import Context
from ketch.notebooks.controller import POD, PORT_ANNOTATION, SECRET, pod_name, secret_token, token_secret_name

log = logging.getLogger(__name__)
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host",
       "authorization", "cookie", "origin", "referer"}
WS_HEADERS = {"x-xsrftoken"}
KETCH_COOKIE = "ketch_session"


def _cookies(header: str | None) -> str | None:
    """The browser's cookies for the notebook, without ketch's own session."""
    if not header:
        return None
    kept = [c.strip() for c in header.split(";") if c.strip() and c.strip().split("=", 1)[0] != KETCH_COOKIE]
    return "; ".join(kept) or None


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie, request) -> bool:  # noqa: ANN001 - the proxy stores nothing between requests
        return False


class NotebookProxy:
    def __init__(self, ctx: Context) -> None:
        self.client = Client(ctx.api, manager="ketch-notebook-proxy")
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0), follow_redirects=False,
                                      cookies=http.cookiejar.CookieJar(policy=_NoCookies()))

    def address(self, ns: str, name: str) -> tuple[str, int] | None:
        """The notebook server's (podIP, port): its Pod's own address when Pods have one (netns mode)."""
        pod = self.client.get(POD, ns, pod_name(name))
        if pod is None or (pod.get("status") or {}).get("phase") != "Running":
            return None
        p = (pod["metadata"].get("annotations") or {}).get(PORT_ANNOTATION)
        return ((pod.get("status") or {}).get("podIP") or "127.0.0.1", int(p)) if p else None

    def upstream_headers(self, ns: str, name: str, port: int, headers: list[tuple[str, str]], incoming) -> list[tuple[str, str]]:  # noqa: ANN001
        tok = secret_token(self.client.get(SECRET, ns, token_secret_name(name)))
        if tok:
            headers.append(("authorization", f"token {tok}"))
        cookies = _cookies(incoming.get("cookie"))
        if cookies:
            headers.append(("cookie", cookies))
        if incoming.get("origin"):
            headers.append(("origin", f"http://127.0.0.1:{port}"))
        return headers

    async def http_proxy(self, request: Request) -> Response:
        ns, name = request.path_params["namespace"], request.path_params["name"]
        if "rest" not in request.path_params:
            return RedirectResponse(str(request.url.replace(path=request.url.path + "/")), status_code=302)
        got = self.address(ns, name)
        if got is None:
            return JSONResponse({"message": f"notebook {ns}/{name} is not running"}, status_code=503)
        ip, port = got
        url = f"http://{ip}:{port}{request.url.path}" + (f"?{request.url.query}" if request.url.query else "")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP]
        headers.append(("x-forwarded-host", request.headers.get("host", "")))
        headers = self.upstream_headers(ns, name, port, headers, request.headers)
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
        got = self.address(ns, name)
        if got is None:
            await ws.close(code=1013, reason=f"notebook {ns}/{name} is not running")
            return
        ip, port = got
        query = ws.scope.get("query_string", b"").decode()
        url = f"ws://{ip}:{port}{ws.url.path}" + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in ws.headers.items() if k.lower() in WS_HEADERS]
        headers = [h for h in self.upstream_headers(ns, name, port, headers, ws.headers) if h[0] != "origin"]
        # Kubernetes' bearer subprotocol (a credential for ketch) is never passed on
        protocols = [p for p in ws.scope.get("subprotocols") or [] if not p.startswith("base64url.bearer.authorization.k8s.io.")]
        try:
            upstream = await connect(url, additional_headers=headers, subprotocols=protocols or None, max_size=None,  # type: ignore[arg-type]
                                     origin=f"http://127.0.0.1:{port}")  # type: ignore[arg-type]
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
