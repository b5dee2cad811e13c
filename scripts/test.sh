#!/usr/bin/env bash
# Installs everything the test suite needs, then runs it: lint, the import-layer contract, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# The dashboard's browser tests drive Debian's chromium (never a downloaded browser).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }
fi
python3 -m ruff check src tests benchmarks
lint-imports
python3 -m pytest -q "$@"
