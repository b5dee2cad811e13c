"""Pod networks: where a Pod's sockets live, behind one seam the Pod worker calls.

Two modes, chosen by ``KETCH_POD_NETWORK`` (docs/kubelet.md, "Pod networks"):

- ``host`` (the default): every Pod shares the host's network, its ``podIP`` is 127.0.0.1, and two Pods
  that listen on one port collide. Each Pod is told so by a ``SharedHostNetwork`` event.
- ``netns``: each Pod gets a Linux network namespace of its own, as a CNI bridge plugin gives it on a node:
  a veth pair whose host end joins the bridge ``ketch0`` (10.244.0.1/16), the Pod's end ``eth0`` with an
  address from that range (its ``podIP``), loopback up, the bridge as default route. Pods reach each other
  and the host directly on the bridge; ketch's API is reached at the bridge address (a forwarder there
  passes connections to ketch's loopback port), which is what ``KUBERNETES_SERVICE_HOST`` and the Pod's
  kubeconfig name. Services get a ClusterIP from 10.96.0.0/16 (servicenet.py), and each Pod's ``/etc/hosts``
  (bind-mounted over the real one, as ``ip netns exec`` does from ``/etc/netns/<name>/hosts``) names its own
  hostname and every Service as ``svc.ns.svc.cluster.local``, ``svc.ns`` and, in its namespace, ``svc``.
  It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's ``ip``; ``auto`` picks it where both are
  there and ``host`` otherwise (resolved in ketch.config, since controllers need to know it too).

The namespaces are named after the Pod's uid (``ketch-<uid>``), so they outlive a killed ketch as the
Pod's processes do, and the next kubelet adopts them (the address is in the Pod's state file); those of
Pods that are gone are removed by the start-up sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from ketch.config import Settings, netns_unavailable

log = logging.getLogger(__name__)

BRIDGE = "ketch0"
POD_CIDR = ipaddress.ip_network(os.environ.get("KETCH_POD_CIDR") or "10.244.0.0/16")
GATEWAY = str(next(POD_CIDR.hosts()))
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
CLAIMS = Path(os.environ.get("KETCH_IPAM_DIR") or "/run/ketch/ipam")
PREFIX = "ketch-"
CLONE_NEWNET = 0x40000000


def claim(ip: str, home: Path, owner: str) -> bool:
    """Take ``ip`` for ``owner`` (a Pod uid, or ``svc:<ns>/<name>``) machine-wide: one file per address,
    made with O_EXCL, so two ketch servers on one machine (or one restarted) never hand out one address
    twice. /run is cleared at boot, as the namespaces are. True if taken now or already this owner's."""
    CLAIMS.mkdir(parents=True, exist_ok=True, mode=0o755)
    p = CLAIMS / ip
    text = f"{home}\n{owner}\n"
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        with contextlib.suppress(OSError):
            return p.read_text() == text
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def release(ip: str, home: Path) -> None:
    p = CLAIMS / ip
    with contextlib.suppress(OSError):
        if p.read_text().split("\n", 1)[0] == str(home):
            p.unlink()


def claims_of(home: Path) -> dict[str, str]:
    """ip -> owner of every address this ketch (by its home) holds."""
    out: dict[str, str] = {}
    for p in CLAIMS.iterdir() if CLAIMS.is_dir() else []:
        with contextlib.suppress(OSError):
            parts = p.read_text().split("\n")
            if len(parts) >= 2 and parts[0] == str(home):
                out[p.name] = parts[1]
    return out


@dataclass(frozen=True)
class PodNet:
    """What a Pod's processes are started with: its address, and the namespace to enter (None: the host's)."""

    ip: str
    netns: str | None = None
    hostname: str = ""

    @property
    def path(self) -> str | None:
        return str(NETNS_DIR / self.netns) if self.netns else None

    @property
    def hosts(self) -> str | None:
        return str(ETC_NETNS / self.netns / "hosts") if self.netns else None

    def wrap(self, argv: list[str], pid: int | None = None) -> list[str]:
        """``argv`` run inside the Pod's namespace (with its /etc/hosts): for what is exec'd without the
        supervisor (probes, ``kubectl exec``, containers with a stdin). Given a running container's ``pid``,
        util-linux's nsenter joins that process's network, UTS and mount namespaces (its hostname too);
        else ``ip netns exec`` makes the same view from the named namespace."""
        if not self.netns:
            return argv
        nsenter = shutil.which("nsenter")
        if pid and nsenter:
            return [nsenter, "-t", str(pid), "-n", "-u", "-m", "--", *argv]
        return [shutil.which("ip") or "/usr/sbin/ip", "netns", "exec", self.netns, *argv]


HOST = PodNet("127.0.0.1")


def permitted() -> str | None:
    """Why this process cannot make Pod namespaces (None: it can)."""
    return netns_unavailable()


def ip_cmd(*args: str, batch: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *args] + (["-batch", "-"] if batch is not None else [])
    r = subprocess.run(cmd, input=batch, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise OSError(f"{' '.join(cmd)}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at ``fd`` (setns(2); os.setns is 3.12+)."""
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def in_netns(netns_path: str, fn):  # noqa: ANN001, ANN201
    """``fn()`` run by a thread that has entered another network namespace: sockets it makes stay there
    (a socket belongs to the namespace it was made in), and setns(2) moves only the calling thread, so
    the rest of ketch never leaves the host's network. Blocking; exceptions come back to the caller."""
    out: dict = {}

    def run() -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(netns_path, os.O_RDONLY)
        try:
            setns(target)
            try:
                out["value"] = fn()
            except BaseException as e:  # noqa: BLE001 - handed back to the calling thread
                out["error"] = e
            finally:
                setns(home)
        finally:
            os.close(target)
            os.close(home)

    t = threading.Thread(target=run, name="netns")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def connect_in(netns_path: str, host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection from inside a Pod's namespace (to its own localhost, for port-forward)."""

    def connect() -> socket.socket:
        s = socket.create_connection((host, port), timeout)
        s.setblocking(False)
        return s

    return in_netns(netns_path, connect)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction of a forwarded connection until EOF, then half-close the other side."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if reader.at_eof():
                writer.close()


def on_this_machine(writer: asyncio.StreamWriter, *nets: ipaddress.IPv4Network) -> bool:
    """Whether a connection to one of ketch's Pod-network listeners comes from a Pod or from this machine.
    A host accepts packets for any of its addresses on any interface, so without this a neighbour on the
    LAN could send to 10.244.0.1 and reach ketch's API as if from loopback, or a Service's proxy."""
    peer = writer.get_extra_info("peername")
    try:
        ip = ipaddress.ip_address(peer[0])
    except (TypeError, ValueError, IndexError):
        return False
    return ip.is_loopback or ip in POD_CIDR or any(ip in n for n in nets)


async def forward(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, host: str, port: int) -> None:
    """Join a client connection to ``host:port``, both ways (kube-proxy's userspace mode, per connection)."""
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    except (OSError, TimeoutError):
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
    for w in (client_w, up_w):
        w.close()


class Network:
    """The Pods' network on this node: host mode hands out 127.0.0.1; netns mode makes a namespace per Pod."""

    kind = "host"

    def __init__(self, api_port: int, home: Path) -> None:
        self.api_port = api_port
        self.home = home

    @property
    def api_host(self) -> str:
        """Where a Pod reaches ketch's API."""
        return "127.0.0.1"

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def setup(self, uid: str, hostname: str, namespace: str, ip: str | None) -> PodNet:
        return HOST

    def teardown(self, uid: str) -> None:
        pass

    def sweep(self, live: set[str]) -> None:
        pass

    def hosts_changed(self, entries: list[tuple[str, str, str]]) -> None:
        """Service names changed: ``[(ip, name, namespace)]`` (netns mode rewrites each Pod's hosts file)."""


class NamespacedNetwork(Network):
    kind = "netns"

    def __init__(self, api_port: int, home: Path) -> None:
        super().__init__(api_port, home)
        self.ips: dict[str, str] = {}  # uid -> podIP
        self.names: dict[str, tuple[str, str]] = {}  # uid -> (hostname, namespace)
        self.services: list[tuple[str, str, str]] = []
        self._api_server: asyncio.AbstractServer | None = None
        self._lock = threading.Lock()

    @property
    def api_host(self) -> str:
        return GATEWAY

    async def start(self) -> None:
        await asyncio.to_thread(self._bridge)
        self._api_server = await asyncio.start_server(self._to_api, GATEWAY, self.api_port, reuse_address=True)

    async def _to_api(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if not on_this_machine(w):
            w.close()
            return
        await forward(r, w, "127.0.0.1", self.api_port)

    async def stop(self) -> None:
        if self._api_server is not None:
            self._api_server.close()
            self._api_server = None

    def _bridge(self) -> None:
        if ip_cmd("link", "show", BRIDGE, check=False).returncode != 0:
            ip_cmd("link", "add", BRIDGE, "type", "bridge", "forward_delay", "0", check=False)
        ip_cmd(batch=f"addr replace {GATEWAY}/{POD_CIDR.prefixlen} dev {BRIDGE}\nlink set {BRIDGE} up\n")

    @staticmethod
    def netns_name(uid: str) -> str:
        return PREFIX + uid

    def _allocate(self, uid: str, wanted: str | None) -> str:
        with self._lock:
            if uid in self.ips:
                return self.ips[uid]
            taken = set(self.ips.values())
            if wanted and wanted not in taken and ipaddress.ip_address(wanted) in POD_CIDR and claim(wanted, self.home, uid):
                self.ips[uid] = wanted
                return wanted
            for addr in POD_CIDR.hosts():
                a = str(addr)
                if a != GATEWAY and a not in taken and claim(a, self.home, uid):
                    self.ips[uid] = a
                    return a
        raise OSError(f"no address left in the pod network {POD_CIDR}")

    def setup(self, uid: str, hostname: str, namespace: str, ip: str | None) -> PodNet:
        """Make (or, after a restart of ketch, adopt) the Pod's namespace; raises OSError when it cannot."""
        name = self.netns_name(uid)
        addr = self._allocate(uid, ip)
        self.names[uid] = (hostname, namespace)
        net = PodNet(addr, name, hostname[:63])
        if (NETNS_DIR / name).exists() and ip == addr:
            self._write_hosts(uid)
            return net
        veth = "kv" + uid.replace("-", "")[:12]
        with contextlib.suppress(OSError):
            ip_cmd("netns", "del", name, check=False)
        ip_cmd("netns", "add", name)
        try:
            ip_cmd(batch=f"link add {veth} type veth peer name eth0 netns {name}\nlink set {veth} master {BRIDGE} up\n")
            ip_cmd("-n", name, batch=(f"addr add {addr}/{POD_CIDR.prefixlen} dev eth0\nlink set eth0 up\nlink set lo up\n"
                                   f"route add default via {GATEWAY}\n"))
        except OSError:
            ip_cmd("netns", "del", name, check=False)
            raise
        self._write_hosts(uid)
        return net

    def _hosts_text(self, uid: str) -> str:
        hostname, ns = self.names.get(uid, ("", ""))
        lines = ["# Kubernetes-managed hosts file (ketch: the Pod's network namespace).",
                 "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 f"{self.ips.get(uid, '')}\t{hostname}"]
        for ip, svc, sns in self.services:
            names = [f"{svc}.{sns}.svc.cluster.local", f"{svc}.{sns}.svc", f"{svc}.{sns}"]
            if sns == ns:
                names.append(svc)
            lines.append(ip + "\t" + " ".join(names))
        return "\n".join(lines) + "\n"

    def _write_hosts(self, uid: str) -> None:
        d = ETC_NETNS / self.netns_name(uid)
        d.mkdir(parents=True, exist_ok=True)
        p = d / "hosts"
        text = self._hosts_text(uid)
        # in place, never by rename: running Pods see this file through a bind mount of its inode
        with open(p, "a+") as f:
            f.seek(0)
            if f.read() == text:
                return
            f.seek(0)
            f.truncate()
            f.write(text)
        os.chmod(p, 0o644)

    def hosts_changed(self, entries: list[tuple[str, str, str]]) -> None:
        self.services = sorted(entries)
        for uid in list(self.ips):
            with contextlib.suppress(OSError):
                self._write_hosts(uid)

    def teardown(self, uid: str) -> None:
        name = self.netns_name(uid)
        with self._lock:
            ip = self.ips.pop(uid, None)
        self.names.pop(uid, None)
        if (NETNS_DIR / name).exists():
            ip_cmd("netns", "del", name, check=False)
        shutil.rmtree(ETC_NETNS / name, ignore_errors=True)
        if ip:
            release(ip, self.home)

    def sweep(self, live: set[str]) -> None:
        """Remove the namespaces and addresses of this ketch's Pods that no worker runs any more (a ketch
        killed before its teardown); another ketch's are left alone."""
        for ip, owner in claims_of(self.home).items():
            if owner.startswith("svc:") or owner in live:
                continue
            log.info("network: removing the namespace of a Pod that is gone: %s", owner)
            self.ips[owner] = ip
            self.teardown(owner)


def select(settings: Settings) -> Network:
    """The network ``settings.pod_network`` names (KETCH_POD_NETWORK, resolved in ketch.config)."""
    cls = NamespacedNetwork if settings.pod_network == "netns" else Network
    return cls(settings.port, settings.home)
