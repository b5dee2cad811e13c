"""Payload logging of a real model server process to real sinks on loopback: KServe's CloudEvent headers on
an HTTP sink, CloudEvents batches, drops counted in a metric when the sink is slow, and the built-in store's
bounds and rotation."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for
from serving_helpers import IRIS_ROW, ModelServer, train_sklearn


class Sink:
    """A real HTTP server recording what it is sent (headers, body); ``delay`` makes it slow. By default
    HTTP/1.0, as http.server is: one request per connection (the logger must fall back from pipelining);
    ``keep_alive`` makes it HTTP/1.1, and ``conns`` records the client address of each request."""

    def __init__(self, delay: float = 0.0, keep_alive: bool = False) -> None:
        self.got: list[tuple[dict, bytes]] = []
        self.conns: list[tuple] = []
        sink = self

        class H(BaseHTTPRequestHandler):
            if keep_alive:
                protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if delay:
                    time.sleep(delay)
                sink.conns.append(self.client_address)
                sink.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sink"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def metric(server_url: str, name: str) -> dict[tuple, float]:
    text = httpx.get(server_url + "/metrics").text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_http_sink_gets_kserve_cloudevent_headers(tmp_path, sink):
    train_sklearn(tmp_path / "m")
    s = ModelServer(tmp_path, "--model-name", "iris", "--model-dir", str(tmp_path / "m"), "--logger-url", sink.url,
                    "--service-name", "demo", "--namespace", "ns1", "--logger-metadata-headers", "x-user,x-tenant").wait_ready()
    try:
        r = httpx.post(f"{s.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, headers={"x-user": "ann", "x-other": "no"})
        assert r.json() == {"predictions": [1]}
        wait_for(lambda: len(sink.got) >= 2, timeout=10, what="two events")
        (req_h, req_b), (resp_h, resp_b) = sorted(sink.got, key=lambda g: g[0]["ce-type"])
        assert req_h["ce-type"] == "org.kubeflow.serving.inference.request" and resp_h["ce-type"] == "org.kubeflow.serving.inference.response"
        for h in (req_h, resp_h):
            assert h["ce-specversion"] == "1.0" and h["ce-inferenceservicename"] == "demo" and h["ce-namespace"] == "ns1"
            assert h["ce-component"] == "predictor" and h["ce-endpoint"] == "default" and h["ce-source"] == "http://localhost/demo"
            assert h["ce-time"] and h["content-type"] == "application/json"
            assert json.loads(h["ce-metadata"]) == {"x-user": ["ann"]}
        assert req_h["ce-id"] == resp_h["ce-id"]
        assert json.loads(req_b) == {"instances": [IRIS_ROW]} and json.loads(resp_b) == {"predictions": [1]}
        want = {(("type", "org.kubeflow.serving.inference.request"),): 1.0, (("type", "org.kubeflow.serving.inference.response"),): 1.0}
        # counted once the sink has answered, which is just after it recorded the event
        wait_for(lambda: metric(s.url, "kserve_logger_events_sent_total") == want, timeout=10, what="sent counters")
    finally:
        s.stop()


@pytest.mark.parametrize("agent", [False, True], ids=["in-process", "agent"])
def test_http_sink_pipelines_events_on_one_connection_with_each_events_headers(tmp_path, agent):
    """Many concurrent requests: their events reach a keep-alive sink as one POST each (binary mode) over a
    persistent connection or two, and the pre-encoded head carries each event's own Ce-Id, Ce-Time and
    Ce-Metadata. An id from a request body cannot inject a header. The same from the delivery agent, a
    child process whose counts reach the model server's metrics."""
    sink = Sink(keep_alive=True)
    train_sklearn(tmp_path / "m")
    s = ModelServer(tmp_path, "--model-name", "iris", "--model-dir", str(tmp_path / "m"), "--logger-url", sink.url,
                    "--service-name", "demo", "--namespace", "ns1", "--logger-metadata-headers", "x-user", "--no-access-log",
                    *(["--logger-agent"] if agent else [])).wait_ready()
    if agent:
        import psutil

        kids = psutil.Process(s.proc.pid).children()
        assert [k.cmdline()[2] for k in kids] == ["ketch.serving.modelserver.logagent"]
    n = 60

    async def flood() -> list[int]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=16)) as c:
            rs = await asyncio.gather(*(c.post(f"{s.url}/v1/models/iris:predict", json={"instances": [[float(i), 2.8, 4.8, 1.4]]},
                                               headers={"x-request-id": f"req-{i}", "x-user": f"user-{i}"}) for i in range(n)))
            return [r.status_code for r in rs]

    try:
        t0 = datetime.now(UTC)
        assert asyncio.run(flood()) == [200] * n
        r = httpx.post(f"{s.url}/v2/models/iris/infer", json={"id": "evil\r\nX-Injected: 1", "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": IRIS_ROW}]})
        assert r.status_code == 200, r.text
        wait_for(lambda: len(sink.got) >= 2 * n + 2, timeout=20, what="every event")
        t1 = datetime.now(UTC)
        assert len(sink.got) == 2 * n + 2
        assert len(set(sink.conns)) <= 3, set(sink.conns)  # persistent: not a connection per event
        reqs = {}
        for h, b in sink.got:
            assert h["ce-specversion"] == "1.0" and h["ce-inferenceservicename"] == "demo" and h["ce-namespace"] == "ns1"
            assert h["ce-source"] == "http://localhost/demo" and h["ce-component"] == "predictor" and h["ce-endpoint"] == "default"
            assert t0 <= datetime.fromisoformat(h["ce-time"]) <= t1
            assert "x-injected" not in h
            if h["ce-id"].startswith("evil"):
                assert h["ce-id"] == "evil  X-Injected: 1" and h["ce-metadata"] == "null"
                continue
            i = int(h["ce-id"].removeprefix("req-"))
            assert json.loads(h["ce-metadata"]) == {"x-user": [f"user-{i}"]}
            if h["ce-type"] == "org.kubeflow.serving.inference.request":
                assert json.loads(b)["instances"][0][0] == float(i)  # this event's own body under its own id
                reqs[i] = h
            else:
                assert h["ce-type"] == "org.kubeflow.serving.inference.response" and "predictions" in json.loads(b)
        assert sorted(reqs) == list(range(n))
        want = {(("type", "org.kubeflow.serving.inference.request"),): n + 1.0, (("type", "org.kubeflow.serving.inference.response"),): n + 1.0}
        wait_for(lambda: metric(s.url, "kserve_logger_events_sent_total") == want, timeout=10, what="sent counters")
        assert sum(metric(s.url, "kserve_logger_work_queue_depth").values()) == 0  # nothing held once all is reported
    finally:
        s.stop()
        sink.close()
    if agent:
        wait_for(lambda: not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kids), timeout=10,
                 what="the agent to end with the model server")


def test_http_sink_batches_as_cloudevents_batch(tmp_path, sink):
    train_sklearn(tmp_path / "m")
    s = ModelServer(tmp_path, "--model-name", "iris", "--model-dir", str(tmp_path / "m"), "--logger-url", sink.url, "--service-name", "demo",
                    "--logger-batch-size", "4", "--logger-batch-interval", "2", "--logger-mode", "request").wait_ready()
    try:
        with httpx.Client() as c:
            for i in range(6):
                c.post(f"{s.url}/v1/models/iris:predict", json={"instances": [[i, 2.8, 4.8, 1.4]]})
        wait_for(lambda: sum(len(json.loads(b)) for _, b in sink.got) >= 6, timeout=10, what="six events")
        assert all(h["content-type"] == "application/cloudevents-batch+json" for h, _ in sink.got)
        events = [e for _, b in sink.got for e in json.loads(b)]
        assert [e["data"]["instances"][0][0] for e in events] == list(range(6))
        assert all(e["type"] == "org.kubeflow.serving.inference.request" and e["specversion"] == "1.0" and e["inferenceservicename"] == "demo"
                   and e["source"] == "http://localhost/demo" and e["datacontenttype"] == "application/json" and e["namespace"] == ""
                   and e["component"] == "predictor" and e["endpoint"] == "default" for e in events)
        assert len({e["id"] for e in events}) == 6 and all(datetime.fromisoformat(e["time"]).tzinfo for e in events)
        assert len(sink.got) < 6 and max(len(json.loads(b)) for _, b in sink.got) == 4  # batched, at most batchSize per POST
    finally:
        s.stop()


def test_slow_sink_drops_are_counted(tmp_path):
    slow = Sink(delay=0.5)
    train_sklearn(tmp_path / "m")
    s = ModelServer(tmp_path, "--model-name", "iris", "--model-dir", str(tmp_path / "m"), "--logger-url", slow.url, "--no-access-log",
                    "--logger-queue-size", "100").wait_ready()

    async def flood() -> list[int]:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as c:
            rs = await asyncio.gather(*(c.post(f"{s.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}) for _ in range(150)))
            return [r.status_code for r in rs]

    try:
        codes = asyncio.run(flood())
        assert codes == [200] * 150  # inference never fails for the logger
        dropped = sum(metric(s.url, "kserve_logger_events_dropped_total").values())
        depth = sum(metric(s.url, "kserve_logger_work_queue_depth").values())
        sent = sum(metric(s.url, "kserve_logger_events_sent_total").values())
        # 300 events, 100 held at most (queued or in flight) and a sink taking two a second: most are dropped,
        # and every one is accounted for
        assert dropped >= 150 and dropped + sent + depth <= 300 + 1, (dropped, sent, depth)
    finally:
        s.stop()
        slow.close()


def test_builtin_store_is_bounded_and_rotated(tmp_path):
    from ketch.serving import payloads

    m = train_sklearn(tmp_path / "m")
    store = tmp_path / "payloads" / "ns1" / "demo"
    s = ModelServer(tmp_path, "--model-name", "demo", "--model-dir", str(tmp_path / "m"), "--logger-url", f"payloads://{store}",
                    "--no-access-log", env={"KETCH_PAYLOAD_FILE_BYTES": "4000", "KETCH_PAYLOAD_ROTATIONS": "1",
                                            "KETCH_PAYLOAD_MAX_BYTES": "12000"}).wait_ready()
    # another replica's leftovers, older than anything this one writes: pruned first
    (store).mkdir(parents=True, exist_ok=True)
    (store / "predictor-1.jsonl").write_bytes(b'{"id": "old"}\n' * 700)
    try:
        with httpx.Client() as c:
            for i in range(120):
                c.post(f"{s.url}/v1/models/demo:predict", json={"instances": [[float(i), 2.8, 4.8, 1.4]]})
        wait_for(lambda: any(e.get("data", {}).get("instances", [[0]])[0][0] == 119.0 for e in payloads.read(store, 5, "request")),
                 timeout=10, what="the last request stored")
        # (a rotation renames the file, then opens a new one: between the two, only the rotation is there)
        files = wait_for(lambda: sorted(p.name for p in store.iterdir()) if any(p.name.endswith(".jsonl") for p in store.iterdir()) else None,
                         timeout=5, what="this replica's current file")
        assert "predictor-1.jsonl" not in files  # pruned to stay under the cap
        assert len(files) == 2 and files[1].endswith(".jsonl.1"), files  # this replica's file and one rotation
        assert sum(p.stat().st_size for p in store.iterdir()) <= 12000 + 4000
        newest = payloads.read(store, 4)
        assert [e["type"].rsplit(".", 1)[1] for e in newest] == ["request", "response", "request", "response"]
        assert newest[-1]["data"] == {"predictions": m.predict([[119.0, 2.8, 4.8, 1.4]]).tolist()} and newest[-2]["inferenceservicename"] == "demo"
        # a reader following the store sees each event once across a rotation
        offsets: dict = {}
        first = list(payloads.events_since(store, offsets))
        with httpx.Client() as c:
            for i in range(6):
                c.post(f"{s.url}/v1/models/demo:predict", json={"instances": [[1000.0 + i, 2.8, 4.8, 1.4]]})
        wait_for(lambda: any(e.get("data", {}).get("instances", [[0]])[0][0] == 1005.0 for e in payloads.read(store, 5, "request")), timeout=10)
        more = [e["data"]["instances"][0][0] for e in payloads.events_since(store, offsets) if e["type"].endswith("request")]
        assert more == [1000.0 + i for i in range(6)] and first
    finally:
        s.stop()
