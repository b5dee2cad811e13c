"""`ketch up --database-url postgresql://...` against a real PostgreSQL: a throwaway cluster started by
the test (tests/postgres_helpers.py) on a free loopback port."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from conftest import make_ketch, wait_for
from postgres_helpers import postgres_server


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with postgres_server(tmp_path_factory.mktemp("pg")) as url:
        yield url


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
        # The restarted ketch is the same leader-election candidate (host and port): it takes its own Lease
        # back at once, so its controllers run without waiting out the 15 s lease of its previous life.
        k.kubectl("create", "namespace", "pg-after")
        wait_for(lambda: k.kubectl("get", "configmap", "kube-root-ca.crt", "-n", "pg-after", check=False).returncode == 0,
                 timeout=10, what="the namespace controller running after the restart")
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
