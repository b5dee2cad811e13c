"""Group commit: many writers' changes committed in one transaction, each acknowledged only after it, with
resourceVersions that strictly increase without gaps, watch events in that order, and a write that fails
(a 409, a name taken) failing alone in its batch. On a real SQLite file and a real PostgreSQL, with real
threads, and over HTTP against `ketch up` with concurrent clients and a watch."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import make_ketch, wait_for
from ketch.store import Change, StoreConflict, StoreExists, open_store
from test_apiserver_postgres import postgres  # noqa: F401  (the fixture: a throwaway PostgreSQL server)

KEY = "/configmaps"


def _cm(name: str, **data: str) -> dict:
    return {"metadata": {"name": name, "namespace": "gc", "uid": f"uid-{name}", "labels": {"app": "gc"}}, "data": dict(data)}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = str(tmp_path / "ketch.db") if request.param == "sqlite" else request.getfixturevalue("postgres")
    s = open_store(url)
    if request.param == "postgresql":  # one server for the module: start each test from an empty store
        with s.engine.begin() as c:
            for t in ("objects", "labels", "owners", "changes", "meta"):
                c.exec_driver_sql(f"DELETE FROM {t}")
        s.close()
        s = open_store(url)
    yield s
    s.close()


def _wait_queued(store, n: int) -> None:
    wait_for(lambda: len(store._pending) >= n, timeout=20, interval=0.002, what=f"{n} writes queued")


def test_one_batch_commits_together_and_a_failure_fails_alone(store):
    base = store.create(KEY, _cm("x", v="0"))
    base_rv = int(base["metadata"]["resourceVersion"])
    seen: list[Change] = []
    gate = threading.Event()

    def hold(ch: Change) -> None:  # runs in the committer, before the write is acknowledged
        seen.append(ch)
        if ch.name == "hold":
            gate.wait(20)

    store.subscribe(hold)
    results: dict[str, object] = {}

    def run(label: str, fn, *args) -> None:  # noqa: ANN001
        try:
            results[label] = fn(*args)
        except Exception as e:
            results[label] = e

    # The first writer commits alone and is held inside its commit; the next five queue behind it in a
    # known order, then all five must share one commit.
    holder = threading.Thread(target=run, args=("hold", store.create, KEY, _cm("hold")))
    holder.start()
    wait_for(lambda: any(c.name == "hold" for c in seen), timeout=20, what="the first commit")
    assert "hold" not in results, "a write was acknowledged before its watchers were told"
    writes = [
        ("update", store.update, KEY, {**_cm("x", v="1"), "metadata": {**_cm("x")["metadata"]}}, base_rv),
        ("stale update", store.update, KEY, {**_cm("x", v="2"), "metadata": {**_cm("x")["metadata"]}}, base_rv),
        ("create dup", store.create, KEY, _cm("dup", who="first")),
        ("create dup again", store.create, KEY, _cm("dup", who="second")),
        ("create ok", store.create, KEY, _cm("ok")),
    ]
    threads = []
    for i, (label, fn, *args) in enumerate(writes):
        t = threading.Thread(target=run, args=(label, fn, *args))
        t.start()
        threads.append(t)
        _wait_queued(store, i + 1)
    batches_before = store.batches
    assert not any(label in results for label, *_ in writes), "a write was acknowledged before it committed"
    gate.set()
    for t in [holder, *threads]:
        t.join(20)
    assert store.batches == batches_before + 1, "the five queued writes did not share one commit"

    assert isinstance(results["stale update"], StoreConflict)
    assert isinstance(results["create dup again"], StoreExists)
    rvs = [int(results[label]["metadata"]["resourceVersion"]) for label in ("hold", "update", "create dup", "create ok")]
    assert rvs == list(range(base_rv + 1, base_rv + 5)), f"resourceVersions not consecutive in commit order: {rvs}"
    assert [(c.rv, c.name, c.type) for c in seen] == [
        (base_rv + 1, "hold", "ADDED"), (base_rv + 2, "x", "MODIFIED"), (base_rv + 3, "dup", "ADDED"), (base_rv + 4, "ok", "ADDED"),
    ]
    assert store.get(KEY, "gc", "x")["data"] == {"v": "1"}
    assert store.get(KEY, "gc", "dup")["data"] == {"who": "first"}
    assert [c.rv for c in store.changes_since(base_rv)] == rvs
    assert store.current_rv() == base_rv + 4


def test_many_threads_writing_lose_nothing_and_stay_in_order(store):
    seen: list[int] = []
    store.subscribe(lambda ch: seen.append(ch.rv))
    for c in range(4):
        store.create(KEY, _cm(f"counter-{c}", n="0"))
    start = store.current_rv()
    seen.clear()
    acked: dict[str, int] = {}
    bumps: list[int] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        for i in range(40):
            o = store.create(KEY, _cm(f"w{w}-{i}", i=str(i)))
            with lock:
                acked[o["metadata"]["name"]] = int(o["metadata"]["resourceVersion"])
            # read-modify-write of a shared counter with the resourceVersion precondition: conflicts
            # are expected (another writer bumped it first) and retried
            while True:
                cur = store.get(KEY, "gc", f"counter-{w % 4}")
                cur["data"]["n"] = str(int(cur["data"]["n"]) + 1)
                try:
                    new = store.update(KEY, cur, int(cur["metadata"]["resourceVersion"]), reindex=False)
                except StoreConflict:
                    continue
                with lock:
                    bumps.append(int(new["metadata"]["resourceVersion"]))
                break

    with ThreadPoolExecutor(16) as ex:
        list(ex.map(writer, range(16)))
    assert len(acked) == 16 * 40
    for name in acked:
        assert store.get(KEY, "gc", name) is not None, f"acknowledged create {name} is missing"
    assert sum(int(store.get(KEY, "gc", f"counter-{c}")["data"]["n"]) for c in range(4)) == 16 * 40, "an acknowledged update was lost"
    all_rvs = sorted([*acked.values(), *bumps])
    assert len(set(all_rvs)) == len(all_rvs), "two acknowledged writes share a resourceVersion"
    assert all_rvs == list(range(start + 1, store.current_rv() + 1)), "resourceVersions have gaps"
    assert seen == all_rvs, "subscribers did not see every change exactly once in resourceVersion order"
    assert [c.rv for c in store.changes_since(start)] == all_rvs
    assert store.batched_writes > store.batches, "sixteen writers never shared a commit"


def test_event_loop_writers_and_thread_writers_share_commits(store):
    """Creates awaited on an event loop (what request handlers do) alongside blocking writers on threads:
    every write settles, none is lost, and the order stays gapless."""
    seen: list[int] = []
    store.subscribe(lambda ch: seen.append(ch.rv))
    start = store.current_rv()

    def blocking(w: int) -> list[int]:
        return [int(store.create(KEY, _cm(f"t{w}-{i}"))["metadata"]["resourceVersion"]) for i in range(30)]

    async def main() -> tuple[list[int], list[int], BaseException | None]:
        loop = asyncio.get_running_loop()
        threads = [loop.run_in_executor(None, blocking, w) for w in range(4)]
        created = await asyncio.gather(*(store.create_async(KEY, _cm(f"a{i}")) for i in range(200)))
        try:
            await store.create_async(KEY, _cm("a7"))
            dup = None
        except StoreExists as e:
            dup = e
        from_threads = [rv for rvs in await asyncio.gather(*threads) for rv in rvs]
        return [int(o["metadata"]["resourceVersion"]) for o in created], from_threads, dup

    from_loop, from_threads, dup = asyncio.run(main())
    assert isinstance(dup, StoreExists), "a name taken was not refused on the async path"
    all_rvs = sorted(from_loop + from_threads)
    assert all_rvs == list(range(start + 1, start + 1 + 320)), "resourceVersions have gaps or repeats"
    assert seen == all_rvs
    assert all(store.get(KEY, "gc", f"a{i}") is not None for i in range(200))
    assert store.batched_writes > store.batches


def test_concurrent_http_writers_and_a_watch(tmp_path):
    k = make_ketch(tmp_path).start()
    try:
        with k.http() as h:
            assert h.post("/api/v1/namespaces", json={"metadata": {"name": "gc"}}).status_code == 201
            rv0 = h.get("/api/v1/namespaces/gc/configmaps").json()["metadata"]["resourceVersion"]
            h.post("/api/v1/namespaces/gc/configmaps", json={"metadata": {"name": "shared"}, "data": {"v": "0"}}).raise_for_status()
        events: list[dict] = []
        ready = threading.Event()

        def watch() -> None:
            with httpx.Client(base_url=k.url, headers=k.headers, timeout=None) as hw, hw.stream(
                "GET", "/api/v1/namespaces/gc/configmaps", params={"watch": "1", "resourceVersion": rv0, "timeoutSeconds": "60"}
            ) as r:
                ready.set()
                try:
                    for line in r.iter_lines():
                        if line.strip():
                            events.append(json.loads(line))
                except httpx.HTTPError:
                    return  # the server stopped at the end of the test

        threading.Thread(target=watch, daemon=True).start()
        assert ready.wait(20)
        acked: dict[str, int] = {}
        lock = threading.Lock()

        def client(w: int) -> None:
            with k.http(timeout=30) as hc:
                for i in range(25):
                    r = hc.post("/api/v1/namespaces/gc/configmaps", json={"metadata": {"name": f"c{w}-{i}"}, "data": {"i": str(i)}})
                    assert r.status_code == 201, r.text
                    with lock:
                        acked[f"c{w}-{i}"] = int(r.json()["metadata"]["resourceVersion"])

        with ThreadPoolExecutor(8) as ex:
            list(ex.map(client, range(8)))
        assert len(set(acked.values())) == len(acked) == 200

        # Eight clients replace one object from the same resourceVersion at once: one wins, seven get 409.
        with k.http() as h:
            shared = h.get("/api/v1/namespaces/gc/configmaps/shared").json()
        barrier = threading.Barrier(8)

        def replace(w: int) -> int:
            body = {**shared, "data": {"v": f"client-{w}"}}
            with k.http(timeout=30) as hc:
                barrier.wait(10)
                return hc.put("/api/v1/namespaces/gc/configmaps/shared", json=body).status_code

        with ThreadPoolExecutor(8) as ex:
            codes = sorted(ex.map(replace, range(8)))
        assert codes == [200] + [409] * 7, codes

        def watched_all() -> bool:
            names = {e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"}
            return set(acked) <= names and any(e["type"] == "MODIFIED" for e in events)

        wait_for(watched_all, timeout=30, what="the watch to see every acknowledged write")
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs), "watch events out of resourceVersion order"
        for e in events:
            if e["type"] == "ADDED" and e["object"]["metadata"]["name"] in acked:
                assert int(e["object"]["metadata"]["resourceVersion"]) == acked[e["object"]["metadata"]["name"]]
        with k.http() as h:
            names = {o["metadata"]["name"] for o in h.get("/api/v1/namespaces/gc/configmaps").json()["items"]}
        assert set(acked) <= names
    finally:
        k.stop()


def test_writes_without_a_resource_version_retry_instead_of_409(tmp_path):
    """Writers run concurrently, so an object can move between a write's read and its commit. A write that
    named no resourceVersion (a merge patch, an apply, a PUT without one, a delete) re-reads and tries again,
    as kube-apiserver's GuaranteedUpdate does; only a write against a named resourceVersion gets the 409."""
    k = make_ketch(tmp_path).start()
    try:
        with k.http() as h:
            assert h.post("/api/v1/namespaces", json={"metadata": {"name": "gc"}}).status_code == 201
            for n in ("hot", "doomed"):
                h.post("/api/v1/namespaces/gc/configmaps", json={"metadata": {"name": n}, "data": {"v": "0"}}).raise_for_status()
        merge = {"Content-Type": "application/merge-patch+json"}
        apply = {"Content-Type": "application/apply-patch+yaml"}
        barrier = threading.Barrier(8)

        def writer(w: int, puts: bool = True) -> list[int]:
            codes = []
            kinds = 4 if puts else 3
            with k.http(timeout=30) as hc:
                barrier.wait(10)
                for i in range(15):
                    url = "/api/v1/namespaces/gc/configmaps/hot"
                    if w % kinds == 0:
                        r = hc.patch(url, content=json.dumps({"data": {f"w{w}": str(i)}}), headers=merge)
                    elif w % kinds == 1:
                        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hot"}, "data": {f"a{w}": str(i)}}
                        r = hc.patch(url, params={"fieldManager": f"m{w}"}, content=json.dumps(cm), headers=apply)
                    elif w % kinds == 2:
                        r = hc.patch(url, content=json.dumps({"metadata": {"labels": {f"l{w}": str(i)}}}), headers=merge)
                    else:  # a PUT that names no resourceVersion replaces whatever is there
                        cur = hc.get(url).json()
                        cur["metadata"].pop("resourceVersion")
                        cur.setdefault("data", {})[f"p{w}"] = str(i)
                        r = hc.put(url, json=cur)
                    codes.append(r.status_code)
            return codes

        def deleter() -> int:
            with k.http(timeout=30) as hc:
                barrier.wait(10)
                return hc.delete("/api/v1/namespaces/gc/configmaps/hot").status_code

        with ThreadPoolExecutor(8) as ex:
            results = list(ex.map(writer, range(8)))
        assert all(c == 200 for codes in results for c in codes), results

        # Patches only (a PUT replaces the whole object, others' fields too): none of them is lost.
        barrier = threading.Barrier(6)
        with ThreadPoolExecutor(6) as ex:
            results = list(ex.map(lambda w: writer(w, puts=False), range(6)))
        assert all(c == 200 for codes in results for c in codes), results
        with k.http() as h:
            hot = h.get("/api/v1/namespaces/gc/configmaps/hot").json()
        assert hot["data"]["w0"] == hot["data"]["w3"] == "14", hot["data"]  # each writer's last merge patch
        assert hot["data"]["a1"] == hot["data"]["a4"] == "14", hot["data"]  # each manager's last apply
        assert hot["metadata"]["labels"]["l2"] == hot["metadata"]["labels"]["l5"] == "14"

        # A delete racing seven patches of the same object: the delete succeeds, not 409.
        barrier = threading.Barrier(8)
        with ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(writer, 0) for _ in range(7)]
            gone = ex.submit(deleter).result()
            for f in futs:
                assert set(f.result()) <= {200, 404}, f.result()  # patches after the delete find nothing
        assert gone == 200
        with k.http() as h:
            assert h.get("/api/v1/namespaces/gc/configmaps/hot").status_code == 404
    finally:
        k.stop()
