"""Health tells the truth: /readyz fails, with the reason, while the store cannot be written, and the log
holds each repeated error once per window instead of a traceback per retry."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import make_ketch, wait_for


def readyz(k) -> tuple[int, str]:
    with k.http(timeout=10) as h:
        r = h.get("/readyz", params={"verbose": "1"})
    return r.status_code, r.text


class ReadOnly:
    """Makes a directory read-only for ketch. As root, file modes do not stop writes, so the directory is a
    tmpfs mount remounted read-only (the way a read-only volume behaves); otherwise a chmod does it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mounted = False

    def prepare(self) -> None:
        if os.geteuid() == 0:
            self.path.mkdir(parents=True, exist_ok=True)
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "ketch-ro-test", str(self.path)], capture_output=True, text=True)
            if r.returncode != 0:
                pytest.fail(f"as root this test needs to mount a tmpfs (CAP_SYS_ADMIN): {r.stderr}")
            self.mounted = True

    def make_read_only(self) -> None:
        if self.mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)
        else:
            for p in [self.path, *self.path.rglob("*")]:
                p.chmod(0o555 if p.is_dir() else 0o444)

    def make_writable(self) -> None:
        if self.mounted:
            subprocess.run(["mount", "-o", "remount,rw", str(self.path)], check=True)
        else:
            for p in [self.path, *self.path.rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o644)

    def cleanup(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


def test_readyz_fails_with_the_reason_while_the_store_is_read_only(tmp_path: Path):
    """The database on a volume that turned read-only (ketch restarted onto it): reads are served, /readyz
    says why it is not ready, writes fail, and the log does not fill with copies of the same traceback."""
    ro = ReadOnly(tmp_path / "db")
    ro.prepare()
    ro.path.mkdir(exist_ok=True)
    db = ro.path / "ketch.db"
    k = make_ketch(tmp_path, env={"KETCH_DISABLE": "kubelet", "KETCH_DATABASE_URL": f"sqlite:///{db}"})
    try:
        k.start()
        assert readyz(k)[0] == 200
        with k.http() as h:
            assert h.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "before"}}).status_code == 201
        k.stop()
        ro.make_read_only()
        k.start()
        code, text = wait_for(lambda: (r := readyz(k))[0] == 500 and r, 10, what="readyz to fail")
        assert "[-]store-write failed: the store cannot be written" in text and "readonly" in text.lower(), text
        with k.http() as h:
            assert h.get("/livez").status_code == 200  # alive, and reads are served
            assert h.get("/api/v1/namespaces/default/configmaps/before").status_code == 200
            for i in range(30):
                assert h.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": f"c{i}"}}).status_code >= 500
            time.sleep(1)
    finally:
        k.stop()
        log = k.log()
        ro.make_writable()
        ro.cleanup()
    assert log.count("Traceback") <= 3, log[-4000:]


def test_identical_errors_are_rate_limited_in_the_log(tmp_path: Path):
    """A reconcile that fails the same way on every retry: one line, then a count."""
    import logging

    from ketch.server.lograte import RepeatFilter

    f = RepeatFilter(window=0.5)
    rec = lambda msg: logging.LogRecord("ketch.x", logging.ERROR, __file__, 1, msg, None, None)  # noqa: E731
    passed = [f.filter(rec("reconcile a failed")) for _ in range(100)]
    assert passed.count(True) == 1
    assert f.filter(rec("reconcile b failed"))  # a different message is never held back
    time.sleep(0.6)
    r = rec("reconcile a failed")
    assert f.filter(r) and "repeated 99 more times" in r.getMessage()
    info = logging.LogRecord("ketch.x", logging.INFO, __file__, 1, "chatty", None, None)
    assert all(f.filter(info) for _ in range(5))
