"""Benchmark-only launcher: ketch exactly as ``ketch up`` serves it, minus the authentication layer.

    KETCH_HOME=/tmp/x python benchmarks/_noauth.py --port 8081

``benchmarks/auth.py`` measures what authentication costs per request by comparing this with a real
``ketch up``. To make the layer the only difference, this goes through ketch's own ``serve()`` (same
``build_context``, same routes, same uvicorn settings, same one-port TLS/HTTP listener) and swaps only
what ``build_app`` returns: the Starlette app that ``AuthMiddleware`` wraps (``ctx.services["auth"].app``)
instead of the middleware. Nothing in ketch itself can turn authentication off; this file is not shipped
and must never be used to serve anything but a benchmark on loopback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ketch.config import Settings  # noqa: E402
from ketch.server import app as server_app  # noqa: E402
from ketch.server.auth import AuthMiddleware  # noqa: E402

_build_app = server_app.build_app


def build_app_without_auth(ctx):  # noqa: ANN001, ANN201
    guard = _build_app(ctx)
    if not isinstance(guard, AuthMiddleware) or ctx.services.get("auth") is not guard:
        raise SystemExit("build_app no longer returns the AuthMiddleware: update benchmarks/_noauth.py")
    return guard.app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log-level", default="warning")
    a = ap.parse_args()
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server_app.build_app = build_app_without_auth  # serve() looks build_app up in its module when called
    server_app.serve(Settings.from_env(host="127.0.0.1", port=a.port))


if __name__ == "__main__":
    main()
