"""What ``packages_to_install`` costs once its layer is built: one-task pipeline runs with a package set
(built by the first run, reused after) against the same task without packages.

    python benchmarks/task_envs.py [--runs 7]

Each figure is the median wall time from submission to SUCCEEDED over ``--runs`` runs, after a warm-up run
of each (which builds the layer with uv). The difference is what a task pays for its own environment on
every later run (target: within 50 ms). Needs PyPI (or uv's cache) for the first run's package.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
import kfp  # noqa: E402
from kfp import dsl  # noqa: E402


@dsl.component
def bare(word: str) -> str:
    return word.title()


@dsl.component(packages_to_install=["inflection==0.5.1"])
def with_pkg(word: str) -> str:
    import inflection

    return inflection.camelize(word)


@dsl.pipeline
def p_bare(word: str = "a_b") -> str:
    return bare(word=word).set_caching_options(False).output


@dsl.pipeline
def p_pkg(word: str = "a_b") -> str:
    return with_pkg(word=word).set_caching_options(False).output


def _token(home: Path) -> str | None:
    p = home / "tokens.csv"
    if p.exists():
        for line in p.read_text().splitlines():
            parts = line.split(",")
            if len(parts) >= 2 and parts[1] == "admin":
                return parts[0]
    return None


def timed(c: kfp.Client, func) -> float:
    t0 = time.perf_counter()
    rid = c.create_run_from_pipeline_func(func, enable_caching=False).run_id
    while (r := c.get_run(rid)).state not in ("SUCCEEDED", "FAILED", "CANCELED"):
        time.sleep(0.01)
    if r.state != "SUCCEEDED":
        raise RuntimeError(f"{func.name} ended {r.state}: {r.error}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as h:
        home = Path(h)
        env = {**os.environ, "KETCH_HOME": h, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        proc = subprocess.Popen([sys.executable, "-m", "ketch", "up", "--port", str(port), "--log-level", "warning"], env=env,
                                stdout=subprocess.DEVNULL, stderr=open(home / "server.log", "wb"), start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(400):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            c = kfp.Client(host=url, existing_token=_token(home))
            first = timed(c, p_pkg)  # builds the layer
            timed(c, p_bare)
            bare_t, pkg_t = [], []
            for _ in range(a.runs):  # interleaved, so drift on a shared machine hits both alike
                bare_t.append(timed(c, p_bare))
                pkg_t.append(timed(c, p_pkg))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
    mb, mp = statistics.median(bare_t), statistics.median(pkg_t)
    print(f"first run with packages (builds the layer): {first * 1000:7.0f} ms")
    print(f"one-task run without packages (median of {a.runs}): {mb * 1000:7.0f} ms")
    print(f"one-task run with packages, layer reused:    {mp * 1000:7.0f} ms")
    print(f"difference: {(mp - mb) * 1000:+.0f} ms (target: within 50 ms)")


if __name__ == "__main__":
    main()
