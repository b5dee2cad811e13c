"""Start a throwaway ``ketch up`` for a benchmark (temporary KETCH_HOME, free loopback port), and talk to it
as a user would: every route but the health checks needs the admin bearer token, which ketch writes at
first start as the first field of the ``admin`` row of ``KETCH_HOME/tokens.csv``.

    with ketch_server() as k:
        with k.http() as h: h.get("/api/v1/namespaces")          # httpx, token attached
        k.kfp_client()                                          # kfp.Client(existing_token=...)
        subprocess.run(["kubectl", "--kubeconfig", str(k.kubeconfig()), "get", "ns"])
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin_token(home: Path) -> str:
    """The admin's bearer token: the first field of the ``admin`` row of ``KETCH_HOME/tokens.csv``."""
    with open(home / "tokens.csv", newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 2 and row[1] == "admin":
                return row[0]
    raise RuntimeError(f"no admin row in {home / 'tokens.csv'}")


@dataclass
class KetchServer:
    """A running ketch: where it listens, its home, and the credentials to reach it with."""

    url: str
    port: int
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen

    @property
    def token(self) -> str:
        return admin_token(self.home)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def http(self, *, auth: bool = True, **kw) -> httpx.Client:
        """An httpx client on ketch's port carrying the admin token (``auth=False``: none)."""
        return httpx.Client(base_url=self.url, headers=self.headers if auth else {}, timeout=kw.pop("timeout", 60), **kw)

    def kfp_client(self, **kw):  # noqa: ANN201
        import kfp

        return kfp.Client(host=self.url, existing_token=self.token, **kw)

    def kubeconfig(self, path: Path | None = None) -> Path:
        """A kubeconfig for kubectl (``ketch kubeconfig``: https on the same port, the token and ketch's CA)."""
        path = path or self.home / "kubeconfig"
        if not path.exists():
            subprocess.run([sys.executable, "-m", "ketch", "kubeconfig", "--server", self.url, "--kubeconfig", str(path)],
                           env=self.env, check=True, capture_output=True)
        return path

    def log(self) -> str:
        p = self.home / "server.log"
        return p.read_text(errors="replace")[-6000:] if p.exists() else ""


@contextlib.contextmanager
def ketch_server(env: dict[str, str] | None = None, args: Sequence[str] = (), *, command: Sequence[str] | None = None,
                 python_args: Sequence[str] = (), preexec_fn: Callable[[], None] | None = None,
                 ready: Callable[[KetchServer], bool] | None = None, timeout: float = 60.0) -> Iterator[KetchServer]:
    """``ketch up`` on a free port with a temporary KETCH_HOME; yields a :class:`KetchServer`.

    ``args`` are extra ``ketch up`` options; ``command`` replaces ``-m ketch up`` (a launcher taking
    ``--port``); ``python_args`` go before it (``-m cProfile -o FILE``); ``ready`` is an extra check to
    wait for after /healthz answers."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ketch-bench-") as d:
        home = Path(d)
        e = {**os.environ, **(env or {}), "KETCH_HOME": str(home),
             "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        cmd = [sys.executable, *python_args, *(command or ["-m", "ketch", "up", "--log-level", "warning"]), "--port", str(port), *args]
        with open(home / "server.log", "wb") as log:
            p = subprocess.Popen(cmd, env=e, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec_fn)
        k = KetchServer(f"http://127.0.0.1:{port}", port, home, e, p)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if p.poll() is not None:
                    raise RuntimeError(f"ketch exited ({p.returncode}):\n{k.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ketch did not come up in {timeout:.0f} s:\n{k.log()}")
                with contextlib.suppress(httpx.HTTPError, OSError):
                    if httpx.get(k.url + "/healthz", timeout=1).status_code == 200 and (ready is None or ready(k)):
                        break
                time.sleep(0.05)
            yield k
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)  # pods left in the session
            p.wait(5)
