"""/readyz that tells the truth: ready only while the store can be written.

A server whose every write fails (read-only ``KETCH_HOME``, a full disk, a database locked by another
process) must not report ready. The check is a real committed write to the store (one small row), run off
the event loop with a deadline and cached for a second, so probes cost nothing the server would notice.
The answer follows kube-apiserver's format: one ``[+]name ok`` / ``[-]name failed: reason`` line per check,
and with ``?verbose`` the passing checks are listed as well.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ketch.machinery.api import Api

PROBE_TIMEOUT_S = 2.0
CACHE_S = 1.0


class StoreProbe:
    def __init__(self, api: Api) -> None:
        self.api = api
        self._at = 0.0
        self._why: str | None = None
        self._lock = asyncio.Lock()

    async def check(self) -> str | None:
        """None when a write just went through, else why it did not."""
        async with self._lock:
            if time.monotonic() - self._at < CACHE_S:
                return self._why
            probe = getattr(self.api.store, "probe_write", None)
            if probe is None:
                self._why = None
            else:
                try:
                    await asyncio.wait_for(asyncio.to_thread(probe), PROBE_TIMEOUT_S)
                    self._why = None
                except TimeoutError:
                    self._why = f"a write to the store did not finish within {PROBE_TIMEOUT_S:.0f}s (database locked or disk stalled)"
                except Exception as e:  # the store's own error says what is wrong (read-only, disk full)
                    self._why = f"the store cannot be written: {_short(e)}"
            self._at = time.monotonic()
            return self._why


def _short(e: Exception) -> str:
    msg = str(getattr(e, "orig", None) or e).splitlines()[0]
    return msg[:300]


def readyz(api: Api) -> Callable[[Request], Awaitable[Response]]:
    probe = StoreProbe(api)

    async def handler(request: Request) -> Response:
        why = await probe.check()
        lines = ["[+]ping ok"]
        lines.append(f"[-]store-write failed: {why}" if why else "[+]store-write ok")
        if why:
            return PlainTextResponse("\n".join(lines) + "\nreadyz check failed\n", status_code=500)
        if "verbose" in request.query_params:
            return PlainTextResponse("\n".join(lines) + "\nreadyz check passed\n")
        return PlainTextResponse("ok")

    return handler
