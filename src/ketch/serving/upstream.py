"""A small keep-alive HTTP/1.1 client for the gateway's hop to model server replicas.

The gateway forwards small request/response bodies to loopback replicas at high rates; a general client
(httpx) spends more per request than the model server does. This one keeps idle connections per replica,
writes the request in one go, and reads a Content-Length, chunked or read-to-close response. A pooled
connection the replica closed meanwhile is retried once on a fresh one.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

HOP = {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailers", b"transfer-encoding",
       b"upgrade", b"host", b"content-length"}


class UpstreamError(Exception):
    pass


class Pool:
    def __init__(self, max_idle: int = 64, timeout: float = 300.0) -> None:
        self.idle: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = defaultdict(list)
        self.max_idle = max_idle
        self.timeout = timeout

    async def request(self, ep: str, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        head = [f"{method} {target} HTTP/1.1\r\nHost: {ep}\r\nContent-Length: {len(body)}\r\n".encode()]
        for k, v in headers:
            if k.lower() not in HOP:
                head.append(k + b": " + v + b"\r\n")
        head.append(b"\r\n")
        data = b"".join(head) + body
        for attempt in (0, 1):
            pooled = bool(self.idle[ep]) and attempt == 0
            if pooled:
                reader, writer = self.idle[ep].pop()
            else:
                host, _, port = ep.rpartition(":")
                try:
                    reader, writer = await asyncio.open_connection(host, int(port))
                except OSError as e:
                    raise ConnectionRefusedError(str(e)) from None
            try:
                writer.write(data)
                status, rheaders, rbody, keep = await asyncio.wait_for(self._read(reader), self.timeout)
            except (asyncio.IncompleteReadError, ConnectionError, UpstreamError):
                writer.close()
                if pooled:
                    continue  # the replica closed an idle connection: once more on a fresh one
                raise
            except BaseException:
                writer.close()
                raise
            if keep and len(self.idle[ep]) < self.max_idle:
                self.idle[ep].append((reader, writer))
            else:
                writer.close()
            return status, rheaders, rbody
        raise UpstreamError("unreachable")

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise UpstreamError(f"bad status line {lines[0][:80]!r}")
        status = int(parts[1])
        headers, length, chunked, keep = [], None, False, parts[0] == b"HTTP/1.1"
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            k, v = k.strip().lower(), v.strip()
            if k == b"content-length":
                length = int(v)
            elif k == b"transfer-encoding" and b"chunked" in v.lower():
                chunked = True
            elif k == b"connection":
                keep = v.lower() != b"close"
            if k not in HOP:
                headers.append((k, v))
        if chunked:
            body = bytearray()
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            return status, headers, bytes(body), keep
        if length is not None:
            return status, headers, await reader.readexactly(length), keep
        if status in (204, 304) or 100 <= status < 200:
            return status, headers, b"", keep
        return status, headers, await reader.read(), False

    def close(self) -> None:
        for conns in self.idle.values():
            for _r, w in conns:
                w.close()
        self.idle.clear()
