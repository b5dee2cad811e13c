"""SPDY/3.1 framing, enough to be the server end of Kubernetes' port-forward streams.

kubectl (1.31+) port-forwards over a WebSocket whose subprotocol is ``SPDY/3.1+portforward.k8s.io``: the
WebSocket's binary messages carry the bytes of an ordinary SPDY/3.1 session, in which the client opens a
pair of streams (``streamtype: error`` and ``streamtype: data``, with ``port`` and ``requestid`` headers)
for each local connection. This module parses and writes the frames such a session uses: SYN_STREAM,
SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE and data frames, with header
blocks compressed by zlib against the protocol's dictionary (one compression context per direction for
the whole session, as the protocol requires). Flow control windows are not enforced (neither does the
spdystream library kubectl uses).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from spdy.dictionary import zdict  # SPDY/3's header compression dictionary (a protocol constant)

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_CANCEL = 5


@dataclass
class Frame:
    control: bool
    type: int = 0  # control frames
    stream_id: int = 0
    flags: int = 0
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    ping_id: int = 0


class Codec:
    """One side of a SPDY session: ``feed`` bytes in, get whole frames out; ``encode_*`` frames out."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._inflate = zlib.decompressobj(zdict=zdict)
        self._deflate = zlib.compressobj(zdict=zdict)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf.extend(data)
        out = []
        while len(self._buf) >= 8:
            length = int.from_bytes(self._buf[5:8], "big")
            if len(self._buf) < 8 + length:
                break
            head, body = bytes(self._buf[:8]), bytes(self._buf[8 : 8 + length])
            del self._buf[: 8 + length]
            out.append(self._parse(head, body))
        return out

    def _parse(self, head: bytes, body: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:
            return Frame(False, stream_id=int.from_bytes(head[:4], "big") & 0x7FFFFFFF, flags=flags, data=body)
        typ = int.from_bytes(head[2:4], "big")
        f = Frame(True, type=typ, flags=flags)
        if typ in (SYN_STREAM, SYN_REPLY, RST_STREAM, HEADERS, WINDOW_UPDATE):
            f.stream_id = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
        if typ == SYN_STREAM:
            f.headers = self._headers(body[10:])
        elif typ in (SYN_REPLY, HEADERS):
            f.headers = self._headers(body[4:])
        elif typ == PING:
            f.ping_id = int.from_bytes(body[:4], "big")
        return f

    def _headers(self, block: bytes) -> dict[str, str]:
        raw = self._inflate.decompress(block)
        n = int.from_bytes(raw[:4], "big")
        i, out = 4, {}
        for _ in range(n):
            ln = int.from_bytes(raw[i : i + 4], "big")
            name = raw[i + 4 : i + 4 + ln].decode()
            i += 4 + ln
            lv = int.from_bytes(raw[i : i + 4], "big")
            out[name] = raw[i + 4 : i + 4 + lv].decode()
            i += 4 + lv
        return out

    def _block(self, headers: dict[str, str]) -> bytes:
        raw = bytearray(struct.pack(">I", len(headers)))
        for k, v in headers.items():
            kb, vb = k.lower().encode(), v.encode()
            raw += struct.pack(">I", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
        return self._deflate.compress(bytes(raw)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(typ: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, typ, (flags << 24) | len(body)) + body

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None, fin: bool = False) -> bytes:
        return self._control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + self._block(headers or {}))

    def rst_stream(self, stream_id: int, status: int = RST_CANCEL) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream: int = 0) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_stream, 0))

    @staticmethod
    def data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
        return struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data
