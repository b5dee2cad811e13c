"""``kubectl port-forward``: the ``pods/portforward`` subresource over WebSocket.

Two framings, chosen by the WebSocket subprotocol the client offers:

- ``SPDY/3.1+portforward.k8s.io`` (kubectl 1.31+): the WebSocket tunnels a SPDY/3.1 session
  (``spdy.py``). Each local connection kubectl accepts opens an ``error`` and a ``data`` stream naming the
  ``port``; the data stream is piped to a TCP connection to that port of the Pod, and a failure to connect
  is written on the error stream (kubectl prints it) before both streams close.
- ``v4.channel.k8s.io`` / ``portforward.k8s.io`` (the kubernetes Python client): the ports come in the
  ``ports`` query parameter; port *i* uses channel 2i for data and 2i+1 for errors, and the first frame
  the server writes on each channel carries the port (2 bytes, little endian), as the kubelet does.

A Pod's port is its localhost:port: 127.0.0.1 of the host's network, or of the Pod's own namespace when
it has one (network.py, docs/kubelet.md); the Pod must
be Running, as kubectl and the kubelet require.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

from starlette.websockets import WebSocket, WebSocketDisconnect

from ketch.kubelet import network, spdy
from ketch.kubelet.base import POD

log = logging.getLogger(__name__)
SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"
CHANNEL_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io", "v5.channel.k8s.io")
CHUNK = 32 * 1024
HOST = "127.0.0.1"


async def _open(port: int, netns: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the Pod's localhost:port: inside its network namespace when it has one, as the
    kubelet's port-forward enters the Pod's sandbox."""
    if netns is None:
        return await asyncio.open_connection(HOST, port)
    sock = await asyncio.to_thread(network.connect_in, netns, HOST, port)
    return await asyncio.open_connection(sock=sock)


def _connect_error(name: str, ns: str, port: int, e: Exception) -> str:
    return f"error forwarding port {port} to pod {name}, uid : failed to connect to {HOST}:{port} inside namespace \"{ns}\": {e}"


async def serve(ws: WebSocket, kubelet: object) -> None:
    ns, name = ws.path_params["namespace"], ws.path_params["name"]
    offered = ws.scope.get("subprotocols") or []
    proto = SPDY_TUNNEL if SPDY_TUNNEL in offered else next((p for p in offered if p in CHANNEL_PROTOCOLS), None)
    if proto is None and not offered:
        proto = ""  # a bare WebSocket: the channel framing, as the kubelet's default
    if proto is None:
        await ws.close(code=1002, reason=f"unsupported subprotocol; this server speaks {SPDY_TUNNEL}, {', '.join(CHANNEL_PROTOCOLS)}")
        return
    pod = kubelet.client.get(POD, ns, name)  # type: ignore[attr-defined]
    if pod is None or (pod.get("status") or {}).get("phase") != "Running":
        await ws.close(code=1011, reason=f'pod "{name}" not found' if pod is None else "unable to forward port because pod is not running")
        return
    worker = next((w for w in getattr(kubelet, "workers", {}).values() if w.ns == ns and w.name == name), None)
    netns = worker.net.path if worker is not None and worker.net is not None else None
    await ws.accept(subprotocol=proto or None)
    try:
        if proto == SPDY_TUNNEL:
            await _SpdySession(ws, ns, name, netns).run()
        else:
            await _channels(ws, ns, name, netns)
    except WebSocketDisconnect:
        pass
    except Exception:  # noqa: BLE001 - one broken session must not take the server with it
        log.exception("port-forward to %s/%s failed", ns, name)
    finally:
        with contextlib.suppress(Exception):
            await ws.close()


# -- SPDY over WebSocket (kubectl) ----------------------------------------------------------------------------


class _SpdySession:
    def __init__(self, ws: WebSocket, ns: str, name: str, netns: str | None = None) -> None:
        self.ws, self.ns, self.name, self.netns = ws, ns, name, netns
        self.codec = spdy.Codec()
        self.lock = asyncio.Lock()
        self.error_streams: dict[str, int] = {}  # requestid -> stream id
        self.writers: dict[int, asyncio.StreamWriter] = {}  # data stream id -> TCP writer
        # What a data stream carried before its TCP connection was open: (chunks, fin). kubectl writes the
        # first bytes right after opening the stream, without waiting for our connect.
        self.pending: dict[int, tuple[list[bytes], bool]] = {}
        self.tasks: set[asyncio.Task] = set()

    async def send(self, data: bytes) -> None:
        async with self.lock:  # frames from several pumps must not interleave within one message
            await self.ws.send_bytes(data)

    async def run(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                data = msg.get("bytes") or b""
                for f in self.codec.feed(data):
                    await self.handle(f)
        finally:
            for t in self.tasks:
                t.cancel()
            for w in self.writers.values():
                with contextlib.suppress(Exception):
                    w.close()

    async def handle(self, f: spdy.Frame) -> None:
        if not f.control:
            w = self.writers.get(f.stream_id)
            if w is None and f.stream_id in self.pending:
                chunks, fin = self.pending[f.stream_id]
                self.pending[f.stream_id] = ([*chunks, f.data], fin or bool(f.flags & spdy.FLAG_FIN))
            if w is not None:
                if f.data:
                    w.write(f.data)
                    with contextlib.suppress(ConnectionError):
                        await w.drain()
                if f.flags & spdy.FLAG_FIN:
                    with contextlib.suppress(OSError):
                        w.write_eof()
            return
        if f.type == spdy.PING:
            await self.send(self.codec.ping(f.ping_id))
        elif f.type == spdy.SYN_STREAM:
            await self.send(self.codec.syn_reply(f.stream_id))
            kind, rid = f.headers.get("streamtype"), f.headers.get("requestid", "")
            if kind == "error":
                self.error_streams[rid] = f.stream_id
            elif kind == "data":
                self.pending[f.stream_id] = ([], False)
                t = asyncio.create_task(self.forward(f.stream_id, rid, f.headers.get("port", "")))
                self.tasks.add(t)
                t.add_done_callback(self.tasks.discard)
        elif f.type == spdy.RST_STREAM:
            w = self.writers.pop(f.stream_id, None)
            if w is not None:
                w.close()
        elif f.type == spdy.GOAWAY:
            raise WebSocketDisconnect(1000)

    async def forward(self, sid: int, rid: str, port_s: str) -> None:
        err_sid = self.error_streams.pop(rid, None)
        try:
            port = int(port_s)
            reader, writer = await _open(port, self.netns)
        except (ValueError, OSError) as e:
            self.pending.pop(sid, None)
            if err_sid is not None:
                await self.send(self.codec.data(err_sid, _connect_error(self.name, self.ns, int(port_s or 0) if port_s.isdigit() else 0, e).encode(), fin=True))
            await self.send(self.codec.data(sid, b"", fin=True))
            return
        chunks, fin = self.pending.pop(sid, ([], False))
        for c in chunks:
            writer.write(c)
        if fin:
            writer.write_eof()
        self.writers[sid] = writer
        try:
            while chunk := await reader.read(CHUNK):
                await self.send(self.codec.data(sid, chunk))
            await self.send(self.codec.data(sid, b"", fin=True))
            if err_sid is not None:
                await self.send(self.codec.data(err_sid, b"", fin=True))
        except (ConnectionError, WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.writers.pop(sid, None)
            writer.close()


# -- channels (the kubernetes Python client) ------------------------------------------------------------------


async def _channels(ws: WebSocket, ns: str, name: str, netns: str | None = None) -> None:
    try:
        ports = [int(p) for p in ",".join(ws.query_params.getlist("ports")).split(",") if p.strip()]
    except ValueError:
        ports = []
    if not ports:
        await ws.send_bytes(bytes([1]) + b"query parameter \"ports\" is required")
        return
    lock = asyncio.Lock()

    async def send(ch: int, data: bytes) -> None:
        async with lock:
            await ws.send_bytes(bytes([ch]) + data)

    writers: dict[int, asyncio.StreamWriter] = {}
    pumps = []
    for i, port in enumerate(ports):
        await send(2 * i, struct.pack("<H", port))
        await send(2 * i + 1, struct.pack("<H", port))
        try:
            reader, writer = await _open(port, netns)
        except OSError as e:
            await send(2 * i + 1, _connect_error(name, ns, port, e).encode())
            continue
        writers[2 * i] = writer

        async def pump(r: asyncio.StreamReader = reader, ch: int = 2 * i) -> None:
            with contextlib.suppress(ConnectionError, WebSocketDisconnect, RuntimeError):
                while chunk := await r.read(CHUNK):
                    await send(ch, chunk)

        pumps.append(asyncio.create_task(pump()))

    async def feed() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes") or b""
            if len(data) > 1 and data[0] in writers:
                w = writers[data[0]]
                w.write(data[1:])
                with contextlib.suppress(ConnectionError):
                    await w.drain()

    async def outputs() -> None:
        if pumps:
            await asyncio.wait(pumps)
        else:
            await asyncio.Event().wait()  # nothing to relay: the session lasts until the client leaves

    feeder = asyncio.create_task(feed())
    relays = asyncio.create_task(outputs())
    try:
        await asyncio.wait([feeder, relays], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in [feeder, relays, *pumps]:
            t.cancel()
        await asyncio.gather(feeder, relays, *pumps, return_exceptions=True)
        for w in writers.values():
            w.close()
