"""Host names as the Host header and URLs carry them: which are loopback, which are IP literals.

Kept apart from authentication so the CLI can ask "is this server on this machine?" without loading
anything heavy."""

from __future__ import annotations

import ipaddress


def host_name(host: str) -> str:
    """The name part of a Host header: ``[::1]:8080`` -> ``::1``, ``a.localhost:80`` -> ``a.localhost``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    name = host_name(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
