"""Helpers for the serving tests: train real models, run real model server processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
IRIS_ROW = [6.8, 2.8, 4.8, 1.4]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


def train_sklearn(d: Path, kind: str = "lr", filename: str = "model.joblib") -> object:
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    x, y = iris()
    m = {"lr": lambda: LogisticRegression(max_iter=1000), "rf": lambda: RandomForestClassifier(n_estimators=20, random_state=0),
         "dt": lambda: DecisionTreeClassifier(random_state=0)}[kind]().fit(x, y)
    d.mkdir(parents=True, exist_ok=True)
    joblib.dump(m, d / filename)
    return m


class ModelServer:
    """``python -m ketch.serving.modelserver`` as a real process."""

    def __init__(self, tmp: Path, *args: str, grpc: bool = False, env: dict | None = None) -> None:
        self.port = free_port()
        self.grpc_port = free_port() if grpc else 0
        self.log = tmp / f"modelserver-{self.port}.log"
        cmd = [sys.executable, "-m", "ketch.serving.modelserver", "--http-port", str(self.port), *args]
        if grpc:
            cmd += ["--grpc-port", str(self.grpc_port)]
        self.proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})},
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> ModelServer:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"model server exited {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"model server not ready:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
