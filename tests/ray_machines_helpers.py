"""Machines that share nothing but a network, on one host: a Linux bridge, one network namespace per
"machine" joined to it by a veth pair, and in each a private mount namespace in which the test's own
directories (ketch's home among them) and the head's Ray directory are hidden under an empty tmpfs. A Ray
head runs in the root namespace on the bridge's address; each machine runs a Ray worker node on its own
address. Only the Python environment and the source tree stay visible there, as an image would have them.

Everything is named per run (``k<hex>``) and torn down on exit, failure included: every process left in a
machine's namespace is killed (``ip netns pids``), then the namespaces and the bridge are deleted. Needs
root and ``ip``/``unshare``; ``unavailable()`` says why not, for a skip.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
# A test cluster on a private bridge: no token authentication (ketch's driver joins it with the same setting).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def unavailable() -> str | None:
    """Why these machines cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root to make network and mount namespaces"
    for tool in ("ip", "unshare", "mount", "nsenter"):
        if shutil.which(tool) is None:
            return f"needs {tool!r} on PATH"
    if not Path(RAY).exists():
        return f"no ray executable next to {sys.executable}"
    probe = f"kprobe{secrets.token_hex(3)}"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"cannot make a network namespace: {r.stderr.strip()}"
    try:
        u = subprocess.run(["ip", "netns", "exec", probe, "unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True)
        if u.returncode != 0:
            return f"cannot make a mount namespace: {u.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


def _free_subnet() -> str:
    """An unused 10.213.X.0/24 (X at random, so concurrent runs do not collide)."""
    used = _ip("-4", "-o", "addr").stdout + _ip("-4", "route").stdout
    for _ in range(200):
        x = random.randint(1, 254)
        if f"10.213.{x}." not in used:
            return f"10.213.{x}"
    raise RuntimeError("no free 10.213.X.0/24 subnet")


def free_port(host: str = "") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class Machine:
    name: str  # the Node name (ray label ketch.dev/node-name)
    netns: str
    ip: str
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """A command on this machine: in its network namespace and the Ray node's own mount namespace (its
        files, not ketch's)."""
        assert self.proc is not None  # ip netns exec, unshare and sh exec in turn: this pid is the Ray node's
        return subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "-n", *argv], capture_output=True, text=True, timeout=timeout)


@dataclass
class Machines:
    bridge: str
    bridge_ip: str
    head_address: str = ""
    head: subprocess.Popen | None = None
    machines: list[Machine] = field(default_factory=list)
    logs: Path | None = None

    def log_tail(self, n: int = 3000) -> str:
        out = []
        for p in sorted((self.logs or Path("/nonexistent")).glob("*.log")):
            with contextlib.suppress(OSError):
                out.append(f"--- {p.name}\n{p.read_text(errors='replace')[-n:]}")
        return "\n".join(out)


def _kill_tree(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    import psutil

    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        kids = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        pass
    for p in [psutil.Process(proc.pid) if proc.poll() is None else None, *kids]:
        if p is not None:
            with contextlib.suppress(psutil.Error):
                p.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def _kill_netns(ns: str) -> None:
    """Every process in the namespace is this test's: all are ended."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline and _ip("netns", "pids", ns, check=False).stdout.split():
            time.sleep(0.2)


@contextlib.contextmanager
def machines(workdir: Path, hide: list[str], count: int = 2, cpus: int = 1) -> Iterator[Machines]:
    """A bridge, a Ray head on its address (root namespace) and ``count`` machines, each a Ray worker node
    in its own network namespace and mount namespace, where every path in ``hide`` (and the head's Ray
    directory) is an empty tmpfs. Machine i is Node ``machine-<i>``, with the Ray resource
    ``machine-<i>: 1`` and ``cpus`` CPUs."""
    tag = secrets.token_hex(3)
    net = _free_subnet()
    m = Machines(bridge=f"kb{tag}", bridge_ip=f"{net}.1", logs=workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    made_ns: list[str] = []
    made_bridge = False
    head_tmp = Path(f"/tmp/kh{tag}")  # short: Ray's unix socket paths live under it
    try:
        _ip("link", "add", m.bridge, "type", "bridge")
        made_bridge = True
        _ip("addr", "add", f"{m.bridge_ip}/24", "dev", m.bridge)
        _ip("link", "set", m.bridge, "up")
        for i in range(1, count + 1):
            ns, host, peer = f"k{tag}m{i}", f"kv{tag}h{i}", f"kv{tag}p{i}"
            _ip("netns", "add", ns)
            made_ns.append(ns)
            _ip("link", "add", host, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", ns)
            _ip("link", "set", host, "master", m.bridge)
            _ip("link", "set", host, "up")
            addr = f"{net}.{10 + i}"
            _ip("-n", ns, "link", "set", peer, "name", "eth0")  # each machine's own eth0 (GLOO_SOCKET_IFNAME names it)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", m.bridge_ip)
            m.machines.append(Machine(f"machine-{i}", ns, addr))
        env = {**os.environ, **RAY_ENV}
        env.pop("RAY_ADDRESS", None)
        port = free_port()
        head_tmp.mkdir()
        ports = [f"--{n}={free_port()}" for n in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
                                                 "runtime-env-agent-port", "ray-client-server-port")]
        head_log = open(workdir / "head.log", "wb")  # noqa: SIM115 - the child's, closed with it
        m.head = subprocess.Popen([RAY, "start", "--head", "--block", f"--node-ip-address={m.bridge_ip}", f"--port={port}", f"--num-cpus={cpus}",
                                   "--include-dashboard=false", f"--temp-dir={head_tmp}", "--labels=ketch.dev/node-name=head", *ports],
                                  stdout=head_log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        m.head_address = f"{m.bridge_ip}:{port}"
        _wait_port(m.bridge_ip, port, m.head, 60)
        hidden = [*hide, str(head_tmp)]
        for i, mc in enumerate(m.machines, 1):
            priv = f"/tmp/k{tag}n{i}"  # the machine's own /tmp-like directory (a tmpfs only it sees)
            os.makedirs(priv, exist_ok=True)
            mounts = " && ".join(f"mount -t tmpfs -o size=512m,mode=0755 tmpfs {h}" for h in [*hidden, priv])
            cmd = (f"{mounts} && cd / && TMPDIR={priv} exec {RAY} start --block --address={m.head_address} --node-ip-address={mc.ip} "
                   f"--num-cpus={cpus} --resources='{{\"{mc.name}\": 1}}' --labels=ketch.dev/node-name={mc.name} --temp-dir={priv}/ray")
            mc.log = workdir / f"{mc.name}.log"
            with open(mc.log, "wb") as lf:
                mc.proc = subprocess.Popen(["ip", "netns", "exec", mc.netns, "unshare", "-m", "--propagation", "private", "sh", "-c", cmd],
                                           stdout=lf, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        yield m
    finally:
        for mc in m.machines:
            _kill_netns(mc.netns)
            _kill_tree(mc.proc)
        _kill_tree(m.head)
        for ns in made_ns:
            _ip("netns", "del", ns, check=False)
        if made_bridge:
            _ip("link", "del", m.bridge, check=False)
        for i in range(1, count + 1):
            with contextlib.suppress(OSError):
                os.rmdir(f"/tmp/k{tag}n{i}")
        shutil.rmtree(head_tmp, ignore_errors=True)


def _wait_port(host: str, port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray head exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.5)
    raise RuntimeError(f"ray head not listening on {host}:{port} after {timeout}s")
