"""The request logger's HTTP client: one persistent HTTP/1.1 connection to the sink, requests pipelined.

The logger shares the model server's core, so what one event costs to deliver is taken from inference.
A general client (httpx) spends about 100 us of Python per POST; at thousands of requests a second that was
a fifth of the core, and most events were dropped. Here the logger writes every queued event's POST in one
``write`` on one keep-alive connection (HTTP/1.1 pipelining: the sink still gets one ordinary POST per
event, KServe's binary mode, answered in order) and reads the answers with httptools (uvicorn's parser,
already a dependency), one callback per answer.

A sink that ends the connection (``Connection: close``, HTTP/1.0) gets the POSTs it did not answer again
on a new connection, one per connection from then on; a connection that closes without answering anything,
a timeout or a status >= 300 counts the events as failed.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from urllib.parse import urlsplit

import httptools


class SinkError(Exception):
    """The sink could not be reached or closed the connection without answering."""


class _Group:
    """POSTs written together: their statuses as answers come, in order; ``done`` once all are in or the
    connection is gone."""

    __slots__ = ("want", "statuses", "done")

    def __init__(self, want: int, done: asyncio.Future) -> None:
        self.want, self.statuses, self.done = want, [], done


class _Conn(asyncio.Protocol):
    """One connection; answers are matched to the groups in flight in the order they were written."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.groups: collections.deque[_Group] = collections.deque()
        self.closed = False
        self.keep_alive = True
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.keep_alive = False
            if self.transport is not None:
                self.transport.close()

    def on_message_complete(self) -> None:  # httptools' callback
        if not self.parser.should_keep_alive():
            self.keep_alive = False
        if not self.groups:
            return
        g = self.groups[0]
        g.statuses.append(self.parser.get_status_code())
        if len(g.statuses) >= g.want:
            self.groups.popleft()
            if not g.done.done():
                g.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.keep_alive = False
        while self.groups:
            g = self.groups.popleft()
            if not g.done.done():
                g.done.set_result(None)


class SinkConnection:
    """Pipelined POSTs to one URL. ``head(extra)`` pre-encodes a request head; ``send(requests)`` delivers
    complete requests (head + body) and returns each one's status (0: not answered). Several ``send`` calls
    may be in flight at once on the one connection: a sender does not wait for the sink's answers before
    writing the next events."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"logger.url: not an http(s) URL: {url!r}")
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if u.scheme == "https" else None
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        default = (u.scheme == "http" and self.port == 80) or (u.scheme == "https" and self.port == 443)
        self.authority = u.hostname if default else f"{u.hostname}:{self.port}"
        self.timeout = timeout
        self.pipelining = True  # until the sink shows it ends connections after an answer
        self._conn: _Conn | None = None
        self._connecting: asyncio.Future | None = None

    def head(self, headers: list[tuple[str, str]]) -> bytes:
        """The fixed start of a POST: request line, Host and ``headers``; per-request headers follow."""
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.authority}", *(f"{k}: {_value(v)}" for k, v in headers)]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    async def _connect(self) -> _Conn:
        if not self.pipelining:  # a sink that answers once per connection: a connection per request
            return await self._open()
        while True:
            c = self._conn
            if c is not None and not c.closed and c.keep_alive:
                return c
            if self._connecting is not None:  # another sender is connecting: use that connection
                await asyncio.shield(self._connecting)
                continue
            break
        self._connecting = asyncio.get_running_loop().create_future()
        try:
            c = await self._open()
        finally:
            self._connecting.set_result(None)
            self._connecting = None
        self._conn = c
        return c

    async def _open(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _t, c = await asyncio.wait_for(loop.create_connection(_Conn, self.host, self.port, ssl=self.ssl), self.timeout)
        except (OSError, TimeoutError) as e:
            raise SinkError(f"cannot connect to {self.authority}: {e or type(e).__name__}") from e
        return c

    async def send(self, requests: list[bytes]) -> list[int]:
        """Deliver ``requests`` (complete HTTP/1.1 POSTs), pipelined; each one's status, 0 if unanswered."""
        statuses = [0] * len(requests)
        i = 0
        unanswered = 0
        loop = asyncio.get_running_loop()
        while i < len(requests):
            c = await self._connect()
            chunk = requests[i:] if self.pipelining else requests[i:i + 1]
            g = _Group(len(chunk), loop.create_future())
            c.groups.append(g)
            assert c.transport is not None
            c.transport.write(b"".join(chunk) if len(chunk) > 1 else chunk[0])
            try:
                await asyncio.wait_for(asyncio.shield(g.done), self.timeout)
            except TimeoutError:
                c.transport.close()
                raise SinkError(f"{self.authority} did not answer within {self.timeout:g} s") from None
            if not self.pipelining and c is not self._conn:
                c.transport.close()
            got = g.statuses
            statuses[i:i + len(got)] = got
            i += len(got)
            if len(got) < len(chunk):  # the connection ended first: the rest go again on a new one
                if not got:
                    unanswered += 1
                    if unanswered > 1:
                        raise SinkError(f"{self.authority} closed the connection without answering")
                elif not c.keep_alive:
                    self.pipelining = False  # it answers one request per connection: stop pipelining
        return statuses

    def close(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None


def _value(v: str) -> str:
    """A header value without line breaks (an id from a request body must not inject headers)."""
    return v.replace("\r", " ").replace("\n", " ")
