"""`ketch up --database-url postgresql://...` against a real PostgreSQL: a throwaway cluster started by
the test (initdb + pg_ctl from Debian's `postgresql` package) on a free loopback port."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import free_port, make_ketch


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


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    base = tmp_path_factory.mktemp("pg")
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


def test_postgres_store_crud_watch_restart_and_kill9(postgres, tmp_path):
    k = make_ketch(tmp_path, extra_args=["--database-url", postgres]).start()
    try:
        k.kubectl("create", "namespace", "pg")
        k.kubectl("create", "configmap", "a", "-n", "pg", "--from-literal=x=1")
        docs = "\n---\n".join(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}", "labels": {"n": str(i % 2)}}, "data": {"i": str(i)}}) for i in range(20))
        k.kubectl("apply", "-n", "pg", "-f", "-", input=docs)
        assert len(k.kjson("get", "cm", "-n", "pg", "-l", "n=1")["items"]) == 10
        k.kubectl("patch", "cm", "a", "-n", "pg", "-p", '{"data":{"x":"3"}}')
        k.kubectl("delete", "cm", "c0", "-n", "pg")
        with k.http() as h:
            rv = h.get("/api/v1/namespaces/pg/configmaps").json()["metadata"]["resourceVersion"]
        k.kubectl("create", "configmap", "after", "-n", "pg")
        k.kill9()
        k.start()
        names = {o["metadata"]["name"] for o in k.kjson("get", "cm", "-n", "pg")["items"]}
        assert {"a", "after"} <= names and "c0" not in names and len(names & {f"c{i}" for i in range(20)}) == 19
        assert k.kjson("get", "cm", "a", "-n", "pg")["data"] == {"x": "3"}
        # A watch from before the restart resumes from the change log kept in PostgreSQL.
        with k.http() as h:
            r = h.get("/api/v1/namespaces/pg/configmaps", params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "1"})
        events = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "after")]
        # Conflicts and uniqueness are enforced by the database too.
        r = k.kubectl("create", "configmap", "a", "-n", "pg", check=False)
        assert r.returncode != 0 and "already exists" in r.stderr
    finally:
        k.stop()
    assert not list(k.home.glob("*.db"))  # nothing went to SQLite
