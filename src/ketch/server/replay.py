"""A request body read ahead of its handler (to authorize a KFP request by its body, to forward it) and
handed over again: an ASGI ``receive`` that replays it once, then defers to the connection's own."""

from __future__ import annotations

from starlette.types import Message, Receive


def replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
