"""One write per HTTP response: uvicorn's protocols with a response's head held for its body.

Used by ketch's API server (server/listener.py) and the model server (serving/modelserver/server.py):
both answer many small requests, where a second send() and a second wake-up of the client per response
are a measurable part of the cost.
"""

from __future__ import annotations

import asyncio


class CoalescingTransport:
    """A transport that sends a response's head and a small body in one write.

    uvicorn writes the status line and headers, then the body, as two writes: two send() calls, and two
    wake-ups of a client blocked reading the answer, for every response (the first of them ~18 % of a
    create's CPU, measured with py-spy). This holds a response head back until the next write on the
    same connection, which for a body sent at once comes in the same turn of the event loop; a head
    whose body does not follow (a stream that waits, a HEAD) is sent on the loop's next turn, so nothing
    waits longer than that. Everything else is the wrapped transport's."""

    __slots__ = ("_t", "_loop", "_held")

    HOLD_MAX = 8192

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._t = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= 1 << 16:
                self._t.write(held + data)
                return
            self._t.write(held)
        elif len(data) <= self.HOLD_MAX and data.endswith(b"\r\n\r\n") and data.startswith(b"HTTP/1.1 ") and data[9:10] != b"1":
            self._held = data  # a head (not a 1xx, which the client waits on): its body follows at once
            self._loop.call_soon(self._flush)
            return
        self._t.write(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._t.is_closing():
            self._t.write(held)

    def writelines(self, data) -> None:  # noqa: ANN001
        self.write(b"".join(data))

    def write_eof(self) -> None:
        self._flush()
        self._t.write_eof()

    def close(self) -> None:
        self._flush()
        self._t.close()

    def abort(self) -> None:
        self._held = None
        self._t.abort()

    def get_write_buffer_size(self) -> int:
        return self._t.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the real transport's
        return getattr(self._t, name)


def coalescing(protocol_class: type) -> type:
    """``protocol_class`` (uvicorn's HTTP protocol) writing through a :class:`CoalescingTransport`."""

    class Coalescing(protocol_class):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    Coalescing.__name__ = f"Coalescing{protocol_class.__name__}"
    return Coalescing
