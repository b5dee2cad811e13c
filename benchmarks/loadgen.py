"""A closed-loop HTTP/1.1 load generator (the role wrk plays): ``c`` keep-alive connections, each sending
the next request as soon as the previous answer is complete, for ``duration`` seconds after a warm-up.

Raw asyncio protocol on uvloop, so the client costs far less per request than the servers it measures;
run pinned to its own core. ``-H "Name: value"`` adds a header to every request (e.g. ketch's bearer token).
Prints one JSON line: requests, errors, rps, p50/p99 in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time


class Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.status = 0

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        i = head.find(b"content-length:")
        if i >= 0:
            j = head.find(b"\r\n", i)
            total = end + 4 + int(head[i + 15:j if j > 0 else None])
        elif b"transfer-encoding: chunked" in head:
            k = self.buf.find(b"0\r\n\r\n", end + 4)
            if k < 0:
                return
            total = k + 5
        else:
            total = end + 4
        if len(self.buf) >= total:
            self.status = int(head[9:12])
            del self.buf[:total]
            if self.waiter and not self.waiter.done():
                self.waiter.set_result(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))


async def worker(host: str, port: int, req: bytes, stop: list, lat: list, errs: list, warm_until: float) -> None:
    loop = asyncio.get_running_loop()
    _t, proto = await loop.create_connection(Conn, host, port)
    while not stop:
        proto.waiter = loop.create_future()
        t0 = time.perf_counter()
        proto.transport.write(req)
        try:
            status = await proto.waiter
        except ConnectionError:
            errs.append(1)
            _t, proto = await loop.create_connection(Conn, host, port)
            continue
        t1 = time.perf_counter()
        if t0 >= warm_until:
            if status != 200:
                errs.append(status)
            lat.append(t1 - t0)


async def run(url: str, body: bytes, conc: int, duration: float, warmup: float, headers: list[str] | None = None) -> dict:
    from urllib.parse import urlparse

    u = urlparse(url)
    extra = "".join(f"{h.strip()}\r\n" for h in headers or [])
    req = (f"POST {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nContent-Type: application/json\r\n{extra}"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    stop: list = []
    lat: list[float] = []
    errs: list = []
    warm_until = time.perf_counter() + warmup
    tasks = [asyncio.create_task(worker(u.hostname, u.port, req, stop, lat, errs, warm_until)) for _ in range(conc)]
    await asyncio.sleep(warmup + duration)
    stop.append(1)
    await asyncio.wait(tasks, timeout=10)
    lat.sort()
    n = len(lat)
    return {"requests": n, "errors": len(errs), "rps": n / duration,
            "p50": lat[n // 2] * 1000 if n else None, "p99": lat[min(n - 1, int(n * 0.99))] * 1000 if n else None}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--body", required=True)
    p.add_argument("-c", type=int, default=1)
    p.add_argument("-d", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--cpu", type=int, default=None)
    p.add_argument("-H", "--header", action="append", default=[], help='"Name: value", repeatable')
    a = p.parse_args()
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(a.url, a.body.encode(), a.c, a.d, a.warmup, a.header))))


if __name__ == "__main__":
    main()
