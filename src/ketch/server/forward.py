"""Forwarding to the leader: what only the process holding the controllers' Lease can answer.

With several ketch processes on one database (docs/apiserver.md), the kubelet and the serving gateway's
routing table live in the leader alone, so a request for them that reaches another process (``kubectl
exec``/``attach``/``port-forward``, ``kubectl logs``, ``kubectl top``, an InferenceService's predict) is
relayed to the leader here. Components declare those requests with ``ctx.forward_to_leader`` (the kubelet
and the gateway know their own URLs); this one layer does the relaying, for plain HTTP (the response
streamed, so ``logs -f`` follows) and WebSocket upgrades (frames relayed both ways, the subprotocol the
leader chose passed back, so exec's channels and port-forward's SPDY-over-WebSocket pass through intact).

Security: the layer sits behind authentication and authorization (server/auth.py, server/authz.py), so a
request with no valid credential, or one its caller may not make, is refused here and never leaves this
process. What is forwarded carries the caller's own credentials (``Authorization``, the WebSocket bearer
subprotocol, the session cookie, ``Impersonate-*``), untouched, and the leader authenticates and authorizes
it again: forwarding grants nothing a caller could not get from the leader directly, and no header is
trusted because a follower sent it. The leader's address comes from its Lease (runtime/leader.py); it is
dialled over TLS and its certificate must be ketch's own (the one in the shared ``KETCH_HOME``, trusted as
it is, not any CA's), so an address written into the Lease by someone else cannot collect the credentials.
A request that was already forwarded once (``X-Ketch-Forwarded-By``) is never forwarded again: two processes
that each believe the other leads answer 503 rather than bounce it between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.events import Message as WsMessage

from ketch.runtime.metrics import metric
from ketch.server.replay import replay

log = logging.getLogger(__name__)
FORWARDED_BY = b"x-ketch-forwarded-by"
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones each hop sets itself.
HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding", b"upgrade",
                 b"content-length", b"host"})
WS_OWN = frozenset({b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions", b"sec-websocket-protocol",
                    b"sec-websocket-accept"})
CONNECT_TIMEOUT_S = 5.0

forwarded = metric(Counter, "ketch_leader_forwarded_requests", "requests this process relayed to the leader, by kind and answer",
                   ("kind", "code"))


def leader_tls(cert: Path | str) -> ssl.SSLContext:
    """TLS that trusts exactly ketch's own serving certificate (shared through KETCH_HOME), as an anchor in
    itself: a self-signed one is its own CA, and a CA-issued one given with ``--tls-cert`` is matched as is."""
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return ctx


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    def set_ok(self, cookie, request) -> bool:  # noqa: ANN001 - one caller's cookies must never reach another's request
        return False


class LeaderForwarder:
    """ASGI middleware: a request some component declared leader-only goes to the leader when this
    process does not lead; everything else (and everything, in the leader) goes on to ``app``."""

    def __init__(self, app: ASGIApp, election: Any, rules: list[tuple[Callable[[dict], bool], bool]], cert: Path | str) -> None:
        self.app = app
        self.election = election  # runtime/leader.py's LeaderElector, or None (one process: never forwards)
        self.rules = rules
        self._cert = cert
        self._tls: ssl.SSLContext | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def tls(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = leader_tls(self._cert)
        return self._tls

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # No cap on connections: each `logs -f` holds one for as long as it follows, and must not queue others.
            self._http = httpx.AsyncClient(verify=self.tls, timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S), follow_redirects=False,
                                           trust_env=False, cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
                                           limits=httpx.Limits(max_connections=None, max_keepalive_connections=32))
        return self._http

    def _rule(self, scope: Scope) -> tuple[bool, bool]:
        """(leader-only, may be served here when the leader is unreachable)."""
        for matches, here in self.rules:
            if matches(scope):
                return True, here
        return False, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        el = self.election
        if el is None or el.leading or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        leader_only, here = self._rule(scope)
        if not leader_only:
            await self.app(scope, receive, send)
            return
        url = el.leader_url()
        again = any(k == FORWARDED_BY for k, _ in scope.get("headers") or ())
        if not url or again:
            if here:
                await self.app(scope, receive, send)
                return
            why = ("it was forwarded here by another ketch process that took this one for the leader" if again
                   else "no leader is known yet (the controllers' Lease names none)")
            await _refuse(scope, send, 503, f"this ketch process does not run the kubelet and the gateway, and {why}; retry shortly")
            return
        if scope["type"] == "http":
            await self._forward_http(scope, receive, send, url, here)
        else:
            await self._forward_ws(scope, receive, send, url)

    def _target(self, scope: Scope, base: str) -> str:
        raw = scope.get("raw_path") or scope["path"].encode()
        qs = scope.get("query_string") or b""
        return base.rstrip("/") + raw.decode("latin-1") + ("?" + qs.decode("latin-1") if qs else "")

    def _headers(self, scope: Scope, drop: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
        out = [(k, v) for k, v in scope.get("headers") or () if k.lower() not in drop]
        out.append((FORWARDED_BY, self.election.cfg.identity.encode()))
        return out

    # -- HTTP ----------------------------------------------------------------------------------------------

    async def _forward_http(self, scope: Scope, receive: Receive, send: Send, url: str, here: bool) -> None:
        body = bytearray()
        while True:  # bounded: BodyLimit in front caps what a request may send
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = self._headers(scope, HOP)
        host = next((v for k, v in scope.get("headers") or () if k == b"host"), None)
        if host is not None:  # the gateway routes on Host ({isvc}.{ns}.<domain>), and the Origin checks compare to it
            headers.append((b"host", host))
        client = self._client()
        req = client.build_request(scope["method"], self._target(scope, url), headers=headers, content=bytes(body))
        try:
            resp = await client.send(req, stream=True)
        except httpx.HTTPError as e:
            forwarded.labels("http", "unreachable").inc()
            if here:
                await self.app(scope, replay(bytes(body), receive), send)
                return
            await _refuse(scope, send, 503, f"the leader at {url} did not answer ({type(e).__name__}: {e}); it may be changing; retry shortly")
            return
        forwarded.labels("http", str(resp.status_code)).inc()
        try:
            out = [(k.lower(), v) for k, v in resp.headers.raw if k.lower() not in HOP - {b"content-length"}]
            await send({"type": "http.response.start", "status": resp.status_code, "headers": out})

            async def pump() -> None:
                async for chunk in resp.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})

            async def gone() -> None:  # the caller hung up (a `logs -f` interrupted): stop reading the leader
                while (await receive())["type"] != "http.disconnect":
                    pass

            p, g = asyncio.create_task(pump()), asyncio.create_task(gone())
            try:
                await asyncio.wait({p, g}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (p, g):
                    t.cancel()
                # their ends collected, a cancel of this request itself still propagating
                await asyncio.gather(p, g, return_exceptions=True)
            if p.done() and not p.cancelled() and p.exception() is not None:
                log.info("forwarding %s to the leader ended early: %s", scope["path"], p.exception())
        finally:
            await resp.aclose()

    # -- WebSocket -----------------------------------------------------------------------------------------

    async def _forward_ws(self, scope: Scope, receive: Receive, send: Send, url: str) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        u = urlsplit(url)
        secure = u.scheme == "https"
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                u.hostname, u.port or (443 if secure else 80), ssl=self.tls if secure else None,
                server_hostname=u.hostname if secure else None), CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ssl.SSLError) as e:
            forwarded.labels("websocket", "unreachable").inc()
            await _refuse(scope, send, 503, f"the leader at {url} did not answer ({type(e).__name__}: {e}); it may be changing; retry shortly")
            return
        try:
            conn = WSConnection(ConnectionType.CLIENT)
            host = next((v.decode("latin-1") for k, v in scope.get("headers") or () if k == b"host"), u.netloc)
            target = self._target(scope, "")
            writer.write(conn.send(Request(host=host, target=target, subprotocols=list(scope.get("subprotocols") or []),
                                           extra_headers=self._headers(scope, HOP | WS_OWN))))
            await writer.drain()
            accepted: AcceptConnection | None = None
            rejected: RejectConnection | None = None
            reject_body = bytearray()
            pending: list = []
            while accepted is None:
                data = await asyncio.wait_for(reader.read(65536), CONNECT_TIMEOUT_S * 6)
                if not data:
                    break
                conn.receive_data(data)
                done = False
                for ev in conn.events():
                    if isinstance(ev, AcceptConnection):
                        accepted = ev
                    elif accepted is not None:
                        pending.append(ev)  # frames that came in the same read as the handshake
                    elif isinstance(ev, RejectConnection):
                        rejected = ev
                        done = not ev.has_body
                    elif isinstance(ev, RejectData):
                        reject_body += ev.data
                        done = ev.body_finished
                if done:
                    break
            if accepted is None:
                code = rejected.status_code if rejected is not None else 502
                forwarded.labels("websocket", str(code)).inc()
                if rejected is None:
                    await _refuse(scope, send, 502, f"the leader at {url} closed the connection during the WebSocket handshake")
                    return
                hdrs = [(k.lower(), v) for k, v in rejected.headers if k.lower() not in HOP]
                await send({"type": "websocket.http.response.start", "status": code, "headers": hdrs})
                await send({"type": "websocket.http.response.body", "body": bytes(reject_body)})
                return
            forwarded.labels("websocket", "101").inc()
            await send({"type": "websocket.accept", "subprotocol": accepted.subprotocol})
            await _relay(conn, reader, writer, receive, send, pending)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()


async def _relay(conn: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, receive: Receive, send: Send, pending: list) -> None:
    """Frames both ways until either side closes; the leader's close code reaches the caller."""
    closed: dict = {}
    parts: list = []  # a message's fragments so far

    async def handle(events: list) -> bool:
        for ev in events:
            if isinstance(ev, (TextMessage, BytesMessage)):
                parts.append(ev.data)
                if ev.message_finished:
                    if isinstance(ev, TextMessage):
                        await send({"type": "websocket.send", "text": "".join(parts)})
                    else:
                        await send({"type": "websocket.send", "bytes": b"".join(parts)})
                    parts.clear()
            elif isinstance(ev, Ping):
                writer.write(conn.send(ev.response()))
            elif isinstance(ev, CloseConnection):
                if conn.state == ConnectionState.REMOTE_CLOSING:
                    writer.write(conn.send(ev.response()))
                closed.update(code=ev.code, reason=ev.reason or "")
                return True
        return False

    async def from_leader() -> None:
        if await handle(pending):
            return
        while True:
            data = await reader.read(65536)
            if not data:
                closed.setdefault("code", 1006)
                return
            conn.receive_data(data)
            if await handle(list(conn.events())):
                return

    async def from_caller() -> None:
        while True:
            msg: Message = await receive()
            if msg["type"] == "websocket.disconnect":
                if conn.state == ConnectionState.OPEN:
                    writer.write(conn.send(CloseConnection(code=msg.get("code") or 1000)))
                    await writer.drain()
                closed["caller"] = True
                return
            text, data = msg.get("text"), msg.get("bytes")
            writer.write(conn.send(WsMessage(data=text if text is not None else (data or b""))))
            await writer.drain()

    a, b = asyncio.create_task(from_leader()), asyncio.create_task(from_caller())
    try:
        await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (a, b):
            t.cancel()
        await asyncio.gather(a, b, return_exceptions=True)
    if not closed.get("caller"):
        code = closed.get("code") or 1000
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000 if code in (1005, 1006) else code, "reason": closed.get("reason", "")})


async def _refuse(scope: Scope, send: Send, code: int, message: str) -> None:
    body = orjson.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                         "reason": "ServiceUnavailable" if code == 503 else "BadGateway", "code": code})
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
    if scope["type"] == "websocket":
        await send({"type": "websocket.http.response.start", "status": code, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
