"""kill -9 at a random moment during concurrent writes loses nothing acknowledged, and watches resume
after the restart from the resourceVersion clients had."""

from __future__ import annotations

import json
import random
import threading
import time

import httpx

from conftest import make_ketch


def _writer(url: str, ns: str, wid: int, stop: threading.Event, created: list[str], counters: dict[int, int], headers: dict | None = None) -> None:
    """Create objects and bump a counter object; record only what the server acknowledged."""
    with httpx.Client(base_url=url, timeout=10, headers=headers) as h:
        i = 0
        while not stop.is_set():
            i += 1
            name = f"w{wid}-{i}"
            try:
                r = h.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": name}, "data": {"i": str(i)}})
                if r.status_code == 201:
                    created.append(name)
                r = h.patch(f"/api/v1/namespaces/{ns}/configmaps/counter-{wid}", content=json.dumps({"data": {"n": str(i)}}),
                            headers={"Content-Type": "application/merge-patch+json"})
                if r.status_code == 200:
                    counters[wid] = i
            except httpx.HTTPError:
                return  # the server died under us: whatever was in flight is unacknowledged


def test_kill9_during_concurrent_writes_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(7)
    k = make_ketch(tmp_path).start()
    ns = "dur"
    try:
        with k.http() as h:
            assert h.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
            for wid in range(4):
                assert h.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": f"counter-{wid}"}, "data": {"n": "0"}}).status_code == 201
            start_rv = h.get(f"/api/v1/namespaces/{ns}/configmaps").json()["metadata"]["resourceVersion"]
        all_created: list[str] = []
        counters: dict[int, int] = {}
        for _round in range(3):
            stop = threading.Event()
            created: list[str] = []
            threads = [threading.Thread(target=_writer, args=(k.url, ns, wid + 10 * _round, stop, created, counters, k.headers)) for wid in range(4)]
            if _round:
                with k.http() as h:  # counters for this round's writer ids
                    for wid in range(4):
                        h.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": f"counter-{wid + 10 * _round}"}, "data": {"n": "0"}})
            for t in threads:
                t.start()
            # Kill at a random moment once writes are flowing (however slow the machine is).
            deadline = time.time() + 60
            while len(created) < 5 and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
            k.kill9()
            stop.set()
            for t in threads:
                t.join(15)
            assert created, "no write was acknowledged before the kill"
            all_created += created
            k.start()
            with k.http() as h:
                items = h.get(f"/api/v1/namespaces/{ns}/configmaps").json()["items"]
            names = {o["metadata"]["name"] for o in items}
            missing = [n for n in all_created if n not in names]
            assert not missing, f"acknowledged creates lost after kill -9: {missing[:5]}"
            by_name = {o["metadata"]["name"]: o for o in items}
            for wid, n in counters.items():
                assert int(by_name[f"counter-{wid}"]["data"]["n"]) >= n, f"acknowledged update of counter-{wid} lost"
        # A watch from before all the kills replays every acknowledged create, in resourceVersion order.
        with k.http() as h:
            r = h.get(f"/api/v1/namespaces/{ns}/configmaps", params={"watch": "1", "resourceVersion": start_rv, "timeoutSeconds": "2"})
        events = [json.loads(line) for line in r.text.splitlines() if line.strip()]
        added = {e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"}
        assert set(all_created) <= added
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
        # New writes after the restarts get resourceVersions above everything seen before.
        with k.http() as h:
            new = h.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "after"}}).json()
        assert int(new["metadata"]["resourceVersion"]) > max(rvs)
    finally:
        k.stop()


def test_watch_open_across_restart_resumes(tmp_path):
    """A client's watch breaks when ketch dies; re-watching from its last resourceVersion continues exactly."""
    k = make_ketch(tmp_path).start()
    try:
        with k.http() as h:
            h.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "before"}})
            rv = h.get("/api/v1/namespaces/default/configmaps").json()["metadata"]["resourceVersion"]
        seen: list[tuple[str, str]] = []
        last_rv = rv

        def watch() -> None:
            nonlocal last_rv
            try:
                with httpx.Client(base_url=k.url, timeout=None, headers=k.headers) as h, h.stream("GET", "/api/v1/namespaces/default/configmaps", params={"watch": "true", "resourceVersion": rv}) as r:
                    for line in r.iter_lines():
                        if line.strip():
                            e = json.loads(line)
                            seen.append((e["type"], e["object"]["metadata"]["name"]))
                            last_rv = e["object"]["metadata"]["resourceVersion"]
            except httpx.HTTPError:
                pass

        t = threading.Thread(target=watch)
        t.start()
        with k.http() as h:
            h.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "one"}})
        deadline = time.time() + 10
        while ("ADDED", "one") not in seen and time.time() < deadline:
            time.sleep(0.05)
        k.kill9()
        t.join(10)
        assert seen == [("ADDED", "one")]
        k.start()
        with k.http() as h:
            h.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "two"}})
            h.delete("/api/v1/namespaces/default/configmaps/one")
            r = h.get("/api/v1/namespaces/default/configmaps", params={"watch": "true", "resourceVersion": last_rv, "timeoutSeconds": "1"})
        events = [(e["type"], e["object"]["metadata"]["name"]) for e in map(json.loads, filter(str.strip, r.text.splitlines()))]
        assert events == [("ADDED", "two"), ("DELETED", "one")]
    finally:
        k.stop()
