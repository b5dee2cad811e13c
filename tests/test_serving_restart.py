"""A kill -9 of ketch mid-rollout: after restart the same Pods keep serving, the split is rebuilt from the
API (no hidden state), and rollouts continue."""

from __future__ import annotations

import httpx

from conftest import make_ketch, wait_for
from serving_helpers import IRIS_ROW, train_sklearn
from test_serving_isvc import isvc_yaml, revisions_seen


def test_kill9_mid_canary_keeps_serving(tmp_path):
    train_sklearn(tmp_path / "lr")
    train_sklearn(tmp_path / "dt", "dt")
    k = make_ketch(tmp_path).start()
    try:
        k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", "default", str(tmp_path / "lr")))
        k.kubectl("wait", "--for=condition=Ready", "isvc/iris", "--timeout=90s")
        k.kubectl("apply", "-f", "-", input=isvc_yaml("iris", "default", str(tmp_path / "dt"), extra="    canaryTrafficPercent: 50\n"))
        wait_for(lambda: len(k.kjson("get", "isvc", "iris")["status"]["components"]["predictor"].get("traffic", [])) == 2, timeout=60)
        url = k.kjson("get", "isvc", "iris")["status"]["url"]
        pods = sorted(p["metadata"]["uid"] for p in k.kjson("get", "pods")["items"])
        k.kill9()
        k.start()
        wait_for(lambda: httpx.post(f"{url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, headers=k.headers).status_code == 200, timeout=60,
                 what="serving after restart")
        seen = revisions_seen(url, 100, k.headers)
        assert set(seen) == {"iris-predictor-00001", "iris-predictor-00002"}, seen
        assert sorted(p["metadata"]["uid"] for p in k.kjson("get", "pods")["items"]) == pods  # adopted, not recreated
        k.kubectl("patch", "isvc", "iris", "--type", "json", "-p", '[{"op":"remove","path":"/spec/predictor/canaryTrafficPercent"}]')
        wait_for(lambda: revisions_seen(url, 10, k.headers) == {"iris-predictor-00002": 10}, timeout=60, what="promotion after restart")
    finally:
        k.stop()
