"""Services on the Pod network (netns mode, network.py): ClusterIPs, a userspace proxy, names in /etc/hosts.

What kube-apiserver's ClusterIP allocator, kube-proxy's userspace mode and cluster DNS do on a cluster,
for one node and without iptables:

- **ClusterIPs**: a Service created with the default address (127.0.0.1, what host mode gives) gets a free
  address from ``KETCH_SERVICE_CIDR`` (10.96.0.0/16) instead, in admission, so ``spec.clusterIP`` is real
  before any Pod reads it. Headless (``None``), ExternalName and explicit addresses are kept.
- **the proxy**: each ClusterIP is a /32 address of the host's end of the Pod network (the ``ketch0``
  bridge; a dummy interface would do, but its kernel module is not everywhere); for each of the Service's
  ports ketch listens on ``clusterIP:port`` and joins each connection to one ready endpoint (round robin over
  the Endpoints object's addresses, as the userspace proxier did). A Pod reaches it through its default
  route (the bridge), ketch's own controllers directly.
- **names**: every Pod's hosts file lists ``svc.ns.svc.cluster.local``, ``svc.ns.svc``, ``svc.ns`` and, in
  the Pod's namespace, ``svc`` (network.py rewrites the files in place when Services change); headless
  Services list their ready Pods' addresses under the Service name instead.

It is level-triggered: each pass compares the listeners and addresses it has with what the Services and
Endpoints say, and closes or opens the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import os
import threading

from ketch.kinds.endpoints import endpoint_addresses
from ketch.kubelet.network import (
    BRIDGE,
    CLAIMS,
    NamespacedNetwork,
    claim,
    claims_of,
    forward,
    ip_cmd,
    on_this_machine,
    release,
)
from ketch.machinery.context import Context
from ketch.machinery.errors import FieldError

log = logging.getLogger(__name__)

SERVICE_CIDR = ipaddress.ip_network(os.environ.get("KETCH_SERVICE_CIDR") or "10.96.0.0/16")
SERVICE = ("v1", "Service")
ENDPOINTS = ("v1", "Endpoints")


class ClusterIPs:
    """Hands out Service addresses, as kube-apiserver's allocator: each once, lowest free first."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.lock = threading.Lock()
        self.used: set[str] | None = None

    def _load(self) -> set[str]:
        if self.used is None:
            rd = self.ctx.api.rd(*SERVICE)
            self.used = {(s.get("spec") or {}).get("clusterIP") or "" for s in self.ctx.api.list(rd)["items"]}
        return self.used

    def admit(self, svc: dict, old: dict | None) -> list[FieldError]:
        spec = svc.get("spec") or {}
        if old is not None:  # immutable once set: an update keeps what was allocated
            was = (old.get("spec") or {}).get("clusterIP")
            if was and spec.get("clusterIP") in ("127.0.0.1", None, ""):
                spec["clusterIP"], spec["clusterIPs"] = was, (old.get("spec") or {}).get("clusterIPs") or [was]
            return []
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") != "127.0.0.1":
            return []
        md = svc.get("metadata") or {}
        owner = f"svc:{md.get('namespace', '')}/{md.get('name', '')}"
        with self.lock:
            used = self._load()
            for addr in SERVICE_CIDR.hosts():
                a = str(addr)
                if a not in used and claim(a, self.ctx.settings.home, owner):
                    used.add(a)
                    spec["clusterIP"], spec["clusterIPs"] = a, [a]
                    return []
        return [FieldError("spec.clusterIP", "FieldValueInvalid", f"no address left in the service range {SERVICE_CIDR}", None)]

    def release(self, ip: str) -> None:
        with self.lock:
            if self.used is not None:
                self.used.discard(ip)
            release(ip, self.ctx.settings.home)


class ServiceProxy:
    """Listeners on ClusterIPs forwarding to ready endpoints, and the Service names every Pod resolves."""

    def __init__(self, ctx: Context, network: NamespacedNetwork) -> None:
        self.ctx = ctx
        self.network = network
        self.ips = ClusterIPs(ctx)
        self.listeners: dict[tuple[str, int], asyncio.AbstractServer] = {}
        self.targets: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self.rr: dict[tuple[str, int], itertools.count] = {}
        self.addresses: set[str] = set()
        self.wake = asyncio.Event()

    def install(self) -> None:
        self.ctx.api.add_validator("", "Service", self.ips.admit)

    async def run(self) -> None:
        watchers = [asyncio.create_task(self._watch(kind)) for kind in (SERVICE, ENDPOINTS)]
        try:
            while True:
                self.wake.clear()
                try:
                    await self.sync()
                except Exception:
                    log.exception("service proxy: sync failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), 30)
        finally:
            for t in watchers:
                t.cancel()
            for s in self.listeners.values():
                s.close()

    async def _watch(self, kind: tuple[str, str]) -> None:
        rd = self.ctx.api.rd(*kind)
        while True:
            try:
                async for typ, _obj in self.ctx.api.watch(rd):
                    if typ == "ERROR":
                        break
                    self.wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("service proxy: watching %s failed", kind[1])
            await asyncio.sleep(0.5)

    async def sync(self) -> None:
        api = self.ctx.api
        services = api.list(api.rd(*SERVICE))["items"]
        eps = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in api.list(api.rd(*ENDPOINTS))["items"]}
        want: dict[tuple[str, int], list[tuple[str, int]]] = {}
        names: list[tuple[str, str, str]] = []
        for s in services:
            md, spec = s["metadata"], s.get("spec") or {}
            ip = spec.get("clusterIP") or ""
            ep = eps.get((md["namespace"], md["name"]))
            if ip == "None":  # headless: the name resolves to the ready Pods themselves, and each Pod with a
                # hostname under this subdomain to its own address (<hostname>.<svc>.<ns>.svc), as cluster DNS does
                for addr in sorted({a for a, _ in endpoint_addresses(ep)}):
                    names.append((addr, md["name"], md["namespace"]))
                for subset in (ep or {}).get("subsets") or []:
                    for a in subset.get("addresses") or []:
                        if a.get("hostname") and a.get("ip"):
                            names.append((a["ip"], f"{a['hostname']}.{md['name']}", md["namespace"]))
                continue
            try:
                if ipaddress.ip_address(ip) not in SERVICE_CIDR:
                    continue
            except ValueError:
                continue
            names.append((ip, md["name"], md["namespace"]))
            for p in spec.get("ports") or []:
                if (p.get("protocol") or "TCP") != "TCP":
                    continue
                want[(ip, int(p["port"]))] = endpoint_addresses(ep, p.get("name") or None) if p.get("name") else \
                    _first_port(ep, p)
        self.network.hosts_changed(names)
        self.targets = want
        addrs = {ip for ip, _ in want}
        for ip in sorted(addrs - self.addresses):
            await asyncio.to_thread(ip_cmd, "addr", "replace", f"{ip}/32", "dev", BRIDGE)
            self.addresses.add(ip)
        for key in [k for k in self.listeners if k not in want]:
            self.listeners.pop(key).close()
            self.rr.pop(key, None)
        for key in want:
            if key not in self.listeners:
                try:
                    self.listeners[key] = await asyncio.start_server(self._handler(key), key[0], key[1], reuse_address=True)
                except OSError as e:
                    log.warning("service proxy: cannot listen on %s:%s: %s", key[0], key[1], e)
        for ip in sorted(self.addresses - addrs):
            await asyncio.to_thread(ip_cmd, "addr", "del", f"{ip}/32", "dev", BRIDGE, check=False)
            self.addresses.discard(ip)
            self.ips.release(ip)
        # addresses claimed in admission for a Service whose create then failed: freed after a minute
        current = {(s.get("spec") or {}).get("clusterIP") for s in services}
        for ip, owner in claims_of(self.ctx.settings.home).items():
            if owner.startswith("svc:") and ip not in current and ip not in self.addresses and _age(ip) > 60:
                self.ips.release(ip)

    def _handler(self, key: tuple[str, int]):  # noqa: ANN202
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if not on_this_machine(w, SERVICE_CIDR):  # a ClusterIP is for Pods and this machine, not the LAN
                w.close()
                return
            targets = self.targets.get(key) or []
            if not targets:  # no ready endpoint: refused, as a Service without endpoints is on a cluster
                w.close()
                return
            n = next(self.rr.setdefault(key, itertools.count()))
            host, port = targets[n % len(targets)]
            await forward(r, w, host, port)

        return handle


def _age(ip: str) -> float:
    import time

    try:
        return time.time() - (CLAIMS / ip).stat().st_mtime
    except OSError:
        return 0.0


def _first_port(ep: dict | None, port: dict) -> list[tuple[str, int]]:
    """Endpoints of an unnamed Service port: the subset port numbered as its targetPort, else the first."""
    tp = port.get("targetPort")
    got = endpoint_addresses(ep, int(tp)) if isinstance(tp, int) else []
    return got or endpoint_addresses(ep, None)
