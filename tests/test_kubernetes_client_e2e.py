"""The kubernetes Python client's own e2e suite (``kubernetes/e2e_test``, vendored unmodified in
tests/data) run against ``ketch up``, at client 30.1 (kfp's pin) and at client 37.

The suite reads ``KUBECONFIG`` and sets ``assert_hostname``, which urllib3 2 accepts only on HTTPS, so it
reaches ketch through a TLS front (tests/tls_proxy.py) as it would reach a cluster. The tests that need a
container image's own program are expected to fail and listed in docs/status.md; every other failure
fails this test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from conftest import make_ketch
from tls_proxy import TLSProxy

DATA = Path(__file__).parent / "data"
# Needs nginx's own program (image nginx serving "Welcome to nginx!" on :80); ketch runs no images.
NEEDS_IMAGE = {"kubernetes/e2e_test/test_client.py::TestClient::test_portforward_http"}


def _client_package(version: str) -> tuple[Path, list[str]]:
    """The ``kubernetes`` package directory of a client version, and extra sys.path entries it needs."""
    import kubernetes

    if kubernetes.__version__ == version:
        return Path(kubernetes.__file__).parent, []
    cache = Path(tempfile.gettempdir()) / "ketch-test-wheels" / f"kubernetes-{version}"
    if not (cache / "kubernetes").exists():
        dl = cache.with_name(cache.name + ".dl")
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dl), f"kubernetes=={version}", "durationpy"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"could not download kubernetes=={version} from PyPI: {r.stderr[-2000:]}")
        for whl in dl.glob("*.whl"):
            shutil.unpack_archive(str(whl), str(cache), "zip")
    return cache / "kubernetes", [str(cache)]


def _run_suite(tmp_path: Path, version: str, ref: str) -> dict[str, str]:
    pkg, extra = _client_package(version)
    work = tmp_path / "suite"
    shutil.copytree(pkg, work / "kubernetes", ignore=shutil.ignore_patterns("__pycache__", "e2e_test"))
    with tarfile.open(DATA / f"kubernetes-client-python-e2e-{ref}.tar.gz") as t:
        t.extractall(work, filter="data")
    k = make_ketch(tmp_path).start()
    try:
        with TLSProxy(k.port, tmp_path) as proxy:
            env = {**os.environ, "KUBECONFIG": str(proxy.kubeconfig(k.kubeconfig, tmp_path / "kubeconfig-tls")),
                   "PYTHONPATH": os.pathsep.join([str(work), *extra])}
            r = subprocess.run(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(work),
                 "--timeout=120", "-rA", "-q", "kubernetes/e2e_test"],
                cwd=work, env=env, capture_output=True, text=True, timeout=900,
            )
    finally:
        k.stop()
    results = {}
    for line in r.stdout.splitlines():
        for outcome in ("PASSED", "FAILED", "ERROR", "SKIPPED"):
            parts = line.split()
            if line.startswith(outcome + " ") and len(parts) > 1 and "::" in parts[1]:  # not a captured log line
                results[parts[1]] = outcome
    assert results, f"the suite did not run:\n{r.stdout[-4000:]}\n{r.stderr[-2000:]}"
    return results, r.stdout


@pytest.mark.parametrize(("version", "ref", "total"), [("30.1.0", "v30.1.0", 32), ("37.0.2", "024658493", 45)])
def test_kubernetes_client_e2e_suite(tmp_path, version, ref, total):
    results, out = _run_suite(tmp_path, version, ref)
    assert len(results) == total, f"expected {total} tests, ran {len(results)}"
    bad = {t: o for t, o in results.items() if o != "PASSED" and t not in NEEDS_IMAGE}
    assert not bad, f"unexpected failures at client {version}: {bad}\n{out[-6000:]}"
    passed = sum(o == "PASSED" for o in results.values())
    assert passed >= total - len(NEEDS_IMAGE)
