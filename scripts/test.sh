#!/usr/bin/env bash
# Installs everything the test suite needs, then runs it: lint, the import-layer contract, and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The PostgreSQL store test starts a throwaway server from Debian's packages; install them on CI (root).
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "warning: could not install postgresql; its test will be skipped" >&2
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
# The dashboard's browser tests drive Debian's chromium (never a downloaded browser).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ]; then
  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }
fi
python3 -m ruff check src tests benchmarks
lint-imports
python3 -m pytest -q "$@"
