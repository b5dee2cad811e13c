#!/usr/bin/env bash
# Installs everything the test suite needs, then runs it: lint, the import-layer contract, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m ruff check src tests benchmarks
lint-imports
python3 -m pytest -q "$@"
