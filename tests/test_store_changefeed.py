"""The store's change feed on a real PostgreSQL (store/changefeed.py): two stores on one database, as two
ketch processes have, each with its own connections and its own LISTEN connection.

Writers through both at once: every resourceVersion is taken once, the sequence has no gap, and each
store's subscribers get every change of the database (their own and the other's) exactly once, in
resourceVersion order; lists through either answer with a resourceVersion a watch can resume from. The
end-to-end version, two `ketch up` processes, is tests/test_multi_ketch.py."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from conftest import wait_for
from ketch.store import open_store
from ketch.store.base import Change
from postgres_helpers import postgres_server


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with postgres_server(tmp_path_factory.mktemp("pg")) as url:
        yield url


def _obj(name: str) -> dict:
    return {"metadata": {"name": name, "namespace": "d", "uid": str(uuid.uuid4())}}


def test_two_stores_on_one_database_share_one_sequence_and_see_every_change_once_in_order(pg):
    a, b = open_store(pg), open_store(pg)
    got: dict[str, list[Change]] = {"a": [], "b": []}
    a.subscribe(got["a"].append)
    b.subscribe(got["b"].append)
    a.feed.start()
    b.feed.start()
    try:
        def writer(store, tag: str, n: int) -> None:
            for i in range(n):
                store.create("/configmaps", _obj(f"{tag}{i}"))
                if i % 5 == 0:
                    cur = store.get("/configmaps", "d", f"{tag}{i}")
                    cur["data"] = {"i": str(i)}
                    store.update("/configmaps", cur, int(cur["metadata"]["resourceVersion"]))
                if i % 7 == 0:
                    store.delete("/configmaps", "d", f"{tag}{i}")

        threads = [threading.Thread(target=writer, args=(s, tag, 60)) for s, tag in ((a, "a"), (b, "b"), (a, "c"), (b, "d"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with sa.create_engine(a.engine.url).connect() as c:
            rvs = [r[0] for r in c.execute(sa.text("SELECT rv FROM changes ORDER BY rv"))]
        assert rvs == list(range(1, len(rvs) + 1)), "one gapless sequence across both stores"
        total = len(rvs)
        wait_for(lambda: len(got["a"]) >= total and len(got["b"]) >= total, timeout=10, what="both stores published everything")
        time.sleep(1.5)  # past a periodic poll of each listener: nothing more may come
        for name, seen in got.items():
            assert [ch.rv for ch in seen] == rvs, f"store {name}: every change once, in order"
        # Both publish the same change for each resourceVersion, whoever wrote it.
        assert [(ch.type, ch.name) for ch in got["a"]] == [(ch.type, ch.name) for ch in got["b"]]
        # Each counts as another process's exactly the changes the other store wrote (names b*, d* are b's).
        by_b = sum(1 for ch in got["a"] if ch.name[0] in "bd")
        assert (a.feed.remote, b.feed.remote) == (by_b, total - by_b)
        # Lists through either come with a resourceVersion that covers what they returned.
        items, rv = b.list("/configmaps", "d")
        assert rv == total and len(items) == 4 * (60 - len(range(0, 60, 7)))
        assert a.current_rv() == b.current_rv() == total
    finally:
        a.close()
        b.close()


def test_a_write_elsewhere_reaches_subscribers_without_a_local_write(pg):
    """The listener alone (LISTEN/NOTIFY) brings another store's write here; no local write is needed to
    pull it in."""
    a, b = open_store(pg), open_store(pg)
    seen: list[Change] = []
    b.subscribe(seen.append)
    b.feed.start()
    try:
        made = a.create("/configmaps", _obj(f"lonely-{uuid.uuid4().hex[:6]}"))
        rv = int(made["metadata"]["resourceVersion"])
        wait_for(lambda: any(ch.rv == rv for ch in seen), timeout=5, what="b's subscriber got a's write")
        assert b.current_rv() >= rv
    finally:
        a.close()
        b.close()


def test_a_write_that_failed_to_commit_leaves_other_processes_commits_to_the_listener(pg):
    """A transaction announced to the feed (``end_write``) whose commit fails: its resourceVersions are
    nobody's, so a notification past them is read at once instead of waiting for the 1 s safety poll."""
    a = open_store(pg)
    try:
        feed = a.feed
        top = feed.published

        class Cursor:  # the transaction's cursor: end_write only queues the notification on it
            def execute(self, sql: str) -> None:
                self.sql = sql

        feed.end_write(Cursor(), top, top + 3)
        assert feed._local_top() == top + 3, "while committing, its own notification is left to its offer"
        feed.write_failed(top, top + 3)
        assert feed._local_top() == 0, "after a failed commit nothing is in flight"
    finally:
        a.close()
