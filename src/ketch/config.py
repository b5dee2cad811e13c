"""Settings for one ketch installation, read from flags and the environment (KETCH_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ketch.machinery.oidc import OIDCConfig


def default_home() -> Path:
    return Path(os.environ.get("KETCH_HOME") or Path.home() / ".ketch").expanduser()


def netns_unavailable() -> str | None:
    """Why this process cannot give Pods network namespaces (None: it can)."""
    import shutil

    if os.geteuid() != 0:
        return "ketch is not running as root (network namespaces need CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    if shutil.which("ip") is None:
        return "iproute2's ip command is not installed"
    return None


def pod_network_mode(value: str) -> str:
    """``KETCH_POD_NETWORK`` resolved: ``auto`` is ``netns`` where this process may make namespaces."""
    m = value.strip().lower()
    if m not in ("host", "netns", "auto"):
        raise ValueError(f"KETCH_POD_NETWORK={value!r}: expected host, netns or auto")
    if m == "auto":
        return "netns" if netns_unavailable() is None else "host"
    return m


def kubelet_kind() -> str:
    """Which kubelet runs this ketch's Pods (``KETCH_KUBELET``): ``local`` or ``ray``."""
    return (os.environ.get("KETCH_KUBELET") or "local").strip().lower()


def pod_network() -> str:
    """This process's Pod network mode, from the environment (what Settings.pod_network holds)."""
    return pod_network_mode(os.environ.get("KETCH_POD_NETWORK") or "host")


_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass
class Settings:
    home: Path = field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None  # None: SQLite file under home
    # Components to leave out (e.g. {"kubelet"} for an API-only server).
    disabled: set[str] = field(default_factory=set)
    node_name: str | None = None
    # Change-log entries kept for watches to resume from; older resourceVersions get 410 Gone.
    watch_history: int = 100_000
    # Host names (besides loopback names and IP literals) that requests may name (DNS rebinding guard).
    allowed_hosts: list[str] = field(default_factory=list)
    # TLS on the one port (a self-signed pair under the home unless given); plain HTTP is served to
    # loopback peers only, unless ``insecure``.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    # OIDC ID tokens from this issuer are accepted (``ketch up --oidc-issuer-url``); see machinery/oidc.py.
    oidc: OIDCConfig | None = None
    # Pods' network (KETCH_POD_NETWORK, kubelet/network.py): "host" (all at 127.0.0.1) or "netns" (a network
    # namespace and address per Pod); "auto" is resolved here. Controllers read it to hand out peer
    # addresses: Service names where Pods resolve them, 127.0.0.1 ports where they share the host's network.
    pod_network: str = "host"
    # Leader election (runtime/leader.py): None decides by the database, on for PostgreSQL (several ketch
    # processes may share it), off for SQLite; the durations are seconds, as kube-controller-manager's.
    leader_elect: bool | None = None
    leader_elect_lease_duration: float = 15.0
    leader_elect_renew_deadline: float = 10.0
    leader_elect_retry_period: float = 2.0

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        s = cls()
        if os.environ.get("KETCH_DATABASE_URL"):
            s.database_url = os.environ["KETCH_DATABASE_URL"]
        if os.environ.get("KETCH_WATCH_HISTORY"):
            s.watch_history = int(os.environ["KETCH_WATCH_HISTORY"])
        if os.environ.get("KETCH_ALLOWED_HOSTS"):
            s.allowed_hosts = [x.strip() for x in os.environ["KETCH_ALLOWED_HOSTS"].split(",") if x.strip()]
        s.pod_network = pod_network()
        elect = (os.environ.get("KETCH_LEADER_ELECT") or "").strip().lower()
        if elect and elect != "auto":
            if elect not in _BOOLS:
                raise ValueError(f"KETCH_LEADER_ELECT={os.environ['KETCH_LEADER_ELECT']!r}: expected true, false or auto")
            s.leader_elect = _BOOLS[elect]
        for f in ("lease_duration", "renew_deadline", "retry_period"):
            env = f"KETCH_LEADER_ELECT_{f.upper()}"
            if os.environ.get(env):
                try:
                    setattr(s, f"leader_elect_{f}", float(os.environ[env]))
                except ValueError as e:
                    raise ValueError(f"{env}={os.environ[env]!r}: expected a number of seconds") from e
        if os.environ.get("KETCH_DISABLE"):
            s.disabled = {x.strip() for x in os.environ["KETCH_DISABLE"].split(",") if x.strip()}
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        s.home = Path(s.home).expanduser().resolve()
        return s

    @property
    def elects_leader(self) -> bool:
        """Whether this process campaigns for the controllers' Lease rather than running them outright."""
        if self.leader_elect is not None:
            return self.leader_elect
        return (self.database_url or "").startswith("postgresql")

    @property
    def db(self) -> str:
        return self.database_url or str(self.home / "ketch.db")

    def _local_host(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"[{host}]" if ":" in host else host

    @property
    def url(self) -> str:
        """How this machine's own clients (pods, the CLI, browsers) reach ketch: plain HTTP."""
        return f"http://{self._local_host()}:{self.port}"

    @property
    def kube_url(self) -> str:
        """The same port over TLS: what kubeconfigs name, since client-go sends tokens only over TLS."""
        return f"https://{self._local_host()}:{self.port}"

    @property
    def artifacts(self) -> str | None:
        """``KETCH_ARTIFACTS``: the shared store (an fsspec URL such as ``s3://bucket/prefix``, or a shared
        directory) for pipeline artifacts and archived Pod logs; None: everything stays under the home."""
        from ketch import storage

        return storage.artifacts_url()

    @property
    def artifact_root(self) -> str:
        """Where pipeline artifacts live unless a run names another pipeline root; what routes that read
        artifacts may serve from (besides object stores): ``KETCH_PIPELINE_ROOT``, else
        ``<KETCH_ARTIFACTS>/pipelines``, else a directory under the home."""
        if os.environ.get("KETCH_PIPELINE_ROOT"):
            return os.environ["KETCH_PIPELINE_ROOT"]
        if self.artifacts:
            from ketch import storage

            return storage.join(self.artifacts, "pipelines")
        return str(self.home / "pipelines" / "artifacts")

    @property
    def log_archive(self) -> str | None:
        """Where the kubelet archives each ended container run's log (``<KETCH_ARTIFACTS>/logs``), so
        ``kubectl logs`` still answers where the local file is gone; None without ``KETCH_ARTIFACTS``."""
        if not self.artifacts:
            return None
        from ketch import storage

        return storage.join(self.artifacts, "logs")

    def path(self, *parts: str) -> Path:
        p = self.home.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p
