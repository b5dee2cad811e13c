"""Several `ketch up` started at the same moment on one new PostgreSQL database (store/sql.py
``setup_lock``): each makes the schema and what every cluster has (namespaces, CRDs, default roles) in
turn under an advisory lock, so neither fails on the other's half-made tables or objects, and the cluster
has each object once."""

from __future__ import annotations

import threading

import pytest

from conftest import free_port
from postgres_helpers import postgres_server
from test_multi_ketch import ELECTION, Peer


@pytest.fixture
def pg(tmp_path_factory: pytest.TempPathFactory):
    with postgres_server(tmp_path_factory.mktemp("pg-start")) as url:
        yield url


def test_three_processes_started_together_on_a_new_database_all_serve(pg, tmp_path):
    home = tmp_path / "ketch-home"
    home.mkdir()
    peers = [Peer(home=home, port=free_port(), tag=t, env=ELECTION, extra_args=["--database-url", pg]) for t in ("a", "b", "c")]
    errors: list[BaseException] = []

    def start(p: Peer) -> None:
        try:
            p.start(timeout=90)
        except BaseException as e:  # noqa: BLE001 - reported below, with the logs
            errors.append(e)

    threads = [threading.Thread(target=start, args=(p,)) for p in peers]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, (errors, [p.log_path.read_text()[-2000:] for p in peers if p.log_path.exists()])
        for p in peers:
            names = [n["metadata"]["name"] for n in p.kjson("get", "namespaces")["items"]]
            assert sorted(names) == sorted(set(names)) and {"default", "kube-system"} <= set(names)
            crds = {c["metadata"]["name"] for c in p.kjson("get", "crds")["items"]}
            assert {"pytorchjobs.kubeflow.org", "inferenceservices.serving.kserve.io"} <= crds
        made = peers[0].kubectl("create", "configmap", "together", "--from-literal=a=b")
        assert made.returncode == 0, made.stderr
        assert peers[2].kjson("get", "configmap", "together")["data"] == {"a": "b"}
    finally:
        for p in peers:
            p.stop()
