"""One write per response (runtime/coalesce.py), with uvicorn's real protocol on a real loopback socket:
every write that reaches the socket's transport is recorded. A small response leaves in one write; a head
whose body is slow to come still goes out at once (on the loop's next turn), then the body; a 1xx head is
never held."""

from __future__ import annotations

import asyncio
import threading

import uvicorn

from ketch.runtime.coalesce import CoalescingTransport, coalescing


class Recorder:
    """The socket's transport, with every write it is given recorded."""

    def __init__(self, t: asyncio.Transport, writes: list[bytes]) -> None:
        self._t = t
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._t.write(data)

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._t, name)


def _serve_and_ask(app, requests: list[bytes]) -> tuple[list[bytes], list[bytes]]:  # noqa: ANN001
    writes: list[bytes] = []
    answers: list[bytes] = []

    async def main() -> None:
        config = uvicorn.Config(app, lifespan="off", log_level="warning", http="httptools")
        config.load()
        base = coalescing(config.http_protocol_class)

        class Recorded(base):  # type: ignore[misc, valid-type]
            def connection_made(self, transport: asyncio.Transport) -> None:
                super().connection_made(Recorder(transport, writes))  # type: ignore[arg-type]

        state = uvicorn.server.ServerState()
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: Recorded(config=config, server_state=state, app_state={}), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        for req in requests:
            w.write(req)
            await w.drain()
            answers.append(await asyncio.wait_for(r.readuntil(b"END"), 5))
        w.close()
        srv.close()

    errors: list[BaseException] = []

    def run() -> None:  # a loop of its own, whatever runs on the test's thread
        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(30)
    assert not errors, errors
    return writes, answers


def test_a_small_response_leaves_in_one_write_and_a_slow_body_still_follows():
    async def app(scope, receive, send):  # noqa: ANN001
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"7")]})
        if scope["path"] == "/slow":
            await asyncio.sleep(0.2)  # the head must not wait for this
        await send({"type": "http.response.body", "body": b"hi, END"})

    req = b"GET /%s HTTP/1.1\r\nhost: x\r\n\r\n"
    writes, answers = _serve_and_ask(app, [req % b"fast", req % b"slow"])
    assert len(answers) == 2 and all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"hi, END") for a in answers)
    assert len(writes) == 3, writes
    assert writes[0].startswith(b"HTTP/1.1 200") and writes[0].endswith(b"hi, END"), "the fast one: head and body in one write"
    assert writes[1].startswith(b"HTTP/1.1 200") and writes[1].endswith(b"\r\n\r\n"), "the slow one: its head alone, at once"
    assert writes[2] == b"hi, END"


def test_a_continue_head_is_sent_at_once_and_a_held_head_goes_on_close():
    sent: list[bytes] = []

    class Raw:
        def write(self, d: bytes) -> None:
            sent.append(d)

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            sent.append(b"<closed>")

    loop = asyncio.new_event_loop()
    try:
        t = CoalescingTransport(Raw(), loop)  # type: ignore[arg-type]
        t.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert sent == [b"HTTP/1.1 100 Continue\r\n\r\n"]
        t.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        assert len(sent) == 1, "a head is held for its body"
        t.close()
        assert sent[1:] == [b"HTTP/1.1 204 No Content\r\n\r\n", b"<closed>"], "closing sends what was held first"
    finally:
        loop.close()
