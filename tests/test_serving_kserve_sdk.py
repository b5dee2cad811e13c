"""The real kserve SDK (``KServeClient`` and ``InferenceRESTClient``) against ketch.

kserve pins many packages, so it lives in its own virtualenv, never ketch's; point ``KETCH_KSERVE_PYTHON``
at that interpreter (default ``/tmp/kserve-venv/bin/python``; ``pip install kserve==0.21.0
kubernetes==36.0.3`` there: kserve's client breaks with kubernetes 37). Without it this test is skipped,
and says so.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from serving_helpers import train_sklearn

PY = os.environ.get("KETCH_KSERVE_PYTHON", "/tmp/kserve-venv/bin/python")

SCRIPT = r'''
import asyncio, sys
from kubernetes import client
from kserve import (KServeClient, constants, V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1PredictorSpec,
                    V1beta1SKLearnSpec, InferenceRESTClient, RESTConfig)
kubeconfig, lr, dt, token = sys.argv[1:5]
auth = {"Authorization": f"Bearer {token}"}
kc = KServeClient(config_file=kubeconfig)
isvc = V1beta1InferenceService(api_version=constants.KSERVE_V1BETA1, kind=constants.KSERVE_KIND_INFERENCESERVICE,
    metadata=client.V1ObjectMeta(name="sdk-iris", namespace="default"),
    spec=V1beta1InferenceServiceSpec(predictor=V1beta1PredictorSpec(sklearn=V1beta1SKLearnSpec(storage_uri=lr))))
kc.create(isvc)
kc.wait_isvc_ready("sdk-iris", namespace="default", polling_interval=1, timeout_seconds=90)
assert kc.is_isvc_ready("sdk-iris", namespace="default")
url = kc.get("sdk-iris", namespace="default")["status"]["url"]
isvc.spec.predictor.canary_traffic_percent = 20
isvc.spec.predictor.sklearn.storage_uri = dt
kc.patch("sdk-iris", isvc, namespace="default")
kc.wait_isvc_ready("sdk-iris", namespace="default", polling_interval=1, timeout_seconds=90, expected_generation=2)
traffic = kc.get("sdk-iris", namespace="default")["status"]["components"]["predictor"]["traffic"]
assert sorted(t["percent"] for t in traffic) == [20, 80], traffic

async def infer():
    for proto in ("v1", "v2"):
        c = InferenceRESTClient(RESTConfig(protocol=proto))
        assert await c.is_model_ready(url, "sdk-iris", headers=auth)
        if proto == "v1":
            r = await c.infer(url, {"instances": [[6.8, 2.8, 4.8, 1.4]]}, model_name="sdk-iris", headers=auth)
            assert r == {"predictions": [1]}, r
        await c.close()
asyncio.run(infer())
kc.delete("sdk-iris", namespace="default")
print("OK")
'''


@pytest.mark.skipif(not os.path.exists(PY), reason=f"no kserve virtualenv at {PY} (set KETCH_KSERVE_PYTHON)")
def test_kserve_sdk_against_ketch(ketch, tmp_path):
    train_sklearn(tmp_path / "lr")
    train_sklearn(tmp_path / "dt", "dt")
    r = subprocess.run([PY, "-c", SCRIPT, str(ketch.kubeconfig), str(tmp_path / "lr"), str(tmp_path / "dt"), ketch.token],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), f"{r.stdout}\n{r.stderr[-3000:]}\n{ketch.log()[-2000:]}"
