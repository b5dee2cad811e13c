"""Benchmark-only launcher: ketch exactly as ``ketch up`` serves it, minus the authentication layer.

    KETCH_HOME=/tmp/x python benchmarks/_noauth.py --port 8081

``benchmarks/auth.py`` measures what authentication costs per request by comparing this with a real
``ketch up``. To make the layer the only difference, this goes through ketch's own ``serve()`` (same
``build_context``, same routes, same uvicorn settings, same one-port TLS/HTTP listener) and swaps only
what ``build_app`` returns: the Starlette app behind ``AuthMiddleware`` and the authorization layer, still
inside the request-metrics and body-limit layers. Nothing in ketch itself can turn authentication off; this file is not shipped
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
    """The same stack (request metrics outermost) with authentication and authorization both left out:
    the reference is ketch without its door, so the figure is their cost together."""
    outer = _build_app(ctx)
    guard = ctx.services.get("auth")
    layer = outer
    while getattr(layer, "app", None) is not None and layer.app is not guard:
        layer = layer.app  # the layers in front of authentication (request metrics, body limits)
    if not isinstance(guard, AuthMiddleware) or getattr(layer, "app", None) is not guard or not hasattr(guard.app, "app"):
        raise SystemExit("build_app no longer wraps AuthMiddleware -> AuthzMiddleware: update benchmarks/_noauth.py")
    layer.app = guard.app.app  # the Starlette app behind authentication and authorization
    return outer


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
