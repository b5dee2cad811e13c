"""One port, HTTPS and HTTP: each new connection's first byte says which it speaks.

kubectl (client-go) sends a bearer token only over TLS, and the kubernetes Python client and the SDKs
built on it follow the kubeconfig, so the Kubernetes API must be reachable over HTTPS; browsers, ``curl``
and ``kfp.Client(host="http://127.0.0.1:8080")`` expect plain HTTP on the same port. A TLS connection
starts with a handshake record (byte 0x16), an HTTP one with a method name, so the listener peeks at that
byte and hands the socket to uvicorn's protocol with or without TLS: one port, one app, both schemes.

Plain HTTP is accepted from loopback peers only, unless ``--insecure``: a token never crosses a network
in clear text, while pods and local tools keep using http://127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import sys

import uvicorn

log = logging.getLogger(__name__)
HANDSHAKE = 0x16
FIRST_BYTE_TIMEOUT_S = 30.0
_NOT_TLS_BODY = b"ketch serves plain HTTP to this machine only: use https\n"
NOT_TLS = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n" % len(_NOT_TLS_BODY) + _NOT_TLS_BODY)


def _loopback_peer(sock: socket.socket) -> bool:
    try:
        host = sock.getpeername()[0]
        ip = ipaddress.ip_address(host)
        return ip.is_loopback or (isinstance(ip, ipaddress.IPv6Address) and bool(ip.ipv4_mapped and ip.ipv4_mapped.is_loopback))
    except (OSError, ValueError, IndexError):
        return False


class _Mux:
    """The accept loop; looks like an asyncio Server to uvicorn's shutdown (close, wait_closed)."""

    def __init__(self, listen: socket.socket, factory, tls: ssl.SSLContext | None, plain_anywhere: bool) -> None:  # noqa: ANN001
        self.listen = listen
        self.factory = factory
        self.tls = tls
        self.plain_anywhere = plain_anywhere
        self.loop = asyncio.get_running_loop()
        self._conns: set[asyncio.Task] = set()
        self._task = asyncio.create_task(self._accept(), name="ketch-accept")

    async def _accept(self) -> None:
        while True:
            try:
                conn, _ = await self.loop.sock_accept(self.listen)
            except asyncio.CancelledError:
                raise
            except OSError as e:  # EMFILE and friends: back off rather than spin
                log.warning("accept failed: %s", e)
                await asyncio.sleep(0.1)
                continue
            t = asyncio.create_task(self._hand_over(conn))
            self._conns.add(t)
            t.add_done_callback(self._conns.discard)

    async def _first_byte(self, conn: socket.socket) -> bytes:
        fut = self.loop.create_future()
        fd = conn.fileno()
        self.loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
        try:
            await asyncio.wait_for(fut, FIRST_BYTE_TIMEOUT_S)
        finally:
            self.loop.remove_reader(fd)
        return conn.recv(1, socket.MSG_PEEK)

    async def _hand_over(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            first = await self._first_byte(conn)
            if not first:
                conn.close()
                return
            if first[0] == HANDSHAKE and self.tls is not None:
                await self.loop.connect_accepted_socket(self.factory, conn, ssl=self.tls, ssl_handshake_timeout=FIRST_BYTE_TIMEOUT_S)
            elif self.plain_anywhere or _loopback_peer(conn):
                await self.loop.connect_accepted_socket(self.factory, conn)
            else:
                with contextlib.suppress(OSError):
                    conn.send(NOT_TLS)
                conn.close()
        except (TimeoutError, OSError, ssl.SSLError, ConnectionError) as e:
            log.debug("connection dropped before HTTP: %s", e)
            conn.close()

    def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(OSError):
            self.listen.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class Server(uvicorn.Server):
    """uvicorn's server with ketch's listener in place of ``loop.create_server``."""

    def __init__(self, config: uvicorn.Config, tls: ssl.SSLContext | None, plain_anywhere: bool) -> None:
        super().__init__(config)
        self.tls = tls
        self.plain_anywhere = plain_anywhere

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            sys.exit(3)
        config = self.config
        protocol_class = config.http_protocol_class

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=_loop)

        try:
            family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
            listen = socket.create_server((config.host, config.port), family=family, backlog=config.backlog)
        except OSError as e:
            log.error("cannot listen on %s:%s: %s", config.host, config.port, e)
            await self.lifespan.shutdown()
            sys.exit(3)
        listen.setblocking(False)
        self.servers = [_Mux(listen, create_protocol, self.tls, self.plain_anywhere)]  # type: ignore[list-item]
        self.started = True


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
