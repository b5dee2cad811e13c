"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl from Debian's `postgresql` package (scripts/test.sh
installs it), on a free loopback port, as the `postgres` user when the tests run as root."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


def _as_pg_user(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root; run the server as the `postgres` user the package created."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def postgres_server(base: Path) -> Iterator[str]:
    """Start a PostgreSQL cluster under ``base`` and yield its URL (user ``ketch``, database ``postgres``);
    skips the test when the server binaries are not installed."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    data = base / "data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        for p in base.parents:  # the postgres user must be able to reach its directory
            if str(p).startswith(("/tmp/", "/var/tmp/")) and p != Path("/tmp"):
                os.chmod(p, os.stat(p).st_mode | 0o711)
    port = free_port()
    subprocess.run(_as_pg_user([str(bindir / "initdb"), "-D", str(data), "-U", "ketch", "--auth=trust", "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True)
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=on"
    subprocess.run(_as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "pg.log"), "-w", "start"]),
                   check=True, capture_output=True)
    try:
        yield f"postgresql://ketch@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_pg_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
