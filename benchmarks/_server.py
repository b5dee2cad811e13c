"""Start a throwaway ``ketch up`` for a benchmark (temporary KETCH_HOME, free loopback port)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"


@contextlib.contextmanager
def ketch_server(env: dict[str, str] | None = None) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as home:
        e = {**os.environ, **(env or {}), "KETCH_HOME": home, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        log = open(Path(home) / "server.log", "wb")
        p = subprocess.Popen([sys.executable, "-m", "ketch", "up", "--port", str(port), "--log-level", "warning"], env=e,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(400):
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                time.sleep(0.05)
            yield url
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
