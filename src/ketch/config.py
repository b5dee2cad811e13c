"""Settings for one ketch installation, read from flags and the environment (KETCH_*)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("KETCH_HOME") or Path.home() / ".ketch").expanduser()


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

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        s = cls()
        if os.environ.get("KETCH_DATABASE_URL"):
            s.database_url = os.environ["KETCH_DATABASE_URL"]
        if os.environ.get("KETCH_WATCH_HISTORY"):
            s.watch_history = int(os.environ["KETCH_WATCH_HISTORY"])
        if os.environ.get("KETCH_DISABLE"):
            s.disabled = {x.strip() for x in os.environ["KETCH_DISABLE"].split(",") if x.strip()}
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        s.home = Path(s.home).expanduser().resolve()
        return s

    @property
    def db(self) -> str:
        return self.database_url or str(self.home / "ketch.db")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def path(self, *parts: str) -> Path:
        p = self.home.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p
