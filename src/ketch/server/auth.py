"""The one door in front of every route: which hosts ketch answers as, who is calling, and whether a
browser's request really comes from ketch's own pages.

Every HTTP request and WebSocket upgrade passes here before routing, in this order:

1. **Host** (DNS rebinding): a name in ``Host`` must be one ketch serves — ``localhost``, ``*.localhost``
   (the gateway's ``<isvc>.<ns>.localhost`` names), the machine's own names when bound beyond loopback,
   and each ``--allowed-host``. IP literals are always fine: rebinding needs a name the attacker owns.
2. **Open paths**: ``/healthz``, ``/livez``, ``/readyz`` and the login page; nothing else.
3. **Credentials**: ``Authorization: Bearer <token>`` (static users, ServiceAccount tokens; also the
   ``base64url.bearer.authorization.k8s.io.<token>`` WebSocket subprotocol that Kubernetes clients use
   where headers cannot be set), else the dashboard's session cookie. None valid: 401, a Kubernetes
   ``Status`` on the Kubernetes API.
4. **Origin**: a WebSocket upgrade carrying an ``Origin`` must come from ketch's own origin; a
   cookie-authenticated request must come from ketch's own origin if it changes anything (any method
   but GET/HEAD/OPTIONS) or carries an Origin at all. Bearer requests cannot be forged by a page (it has
   no token), so they need no Origin.

The identity is left in ``scope["ketch.user"]`` for the authorization layer right behind
(``server/authz.py``), which decides what it may do (RBAC). Without a credential only a public
InferenceService (``public``, asked of that layer) is served, to ``system:anonymous``.
"""

from __future__ import annotations

import base64
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson

from ketch.machinery.authn import Authenticator, UserInfo, host_name, is_ip, is_loopback

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "ketch_session"
OPEN = frozenset({"/healthz", "/livez", "/readyz", "/login", "/logout"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WS_BEARER = "base64url.bearer.authorization.k8s.io."
LOGIN_CODE_TTL_S = 3600.0
HOSTS_REMEMBERED = 1024


class HostPolicy:
    def __init__(self, bind_host: str, allowed: list[str]) -> None:
        self.exact: set[str] = {"localhost"}
        self.suffixes: list[str] = [".localhost"]
        self._seen: dict[str, bool] = {}
        for a in allowed:
            a = a.strip().lower()
            if a.startswith("*."):
                self.suffixes.append(a[1:])
            elif a.startswith("."):
                self.suffixes.append(a)
            elif a:
                self.exact.add(host_name(a))
        if not is_loopback(bind_host):
            if bind_host not in ("", "0.0.0.0", "::"):
                self.exact.add(host_name(bind_host))
            for n in (socket.gethostname(), socket.getfqdn()):
                if n:
                    self.exact.add(n.lower())

    def allows(self, host: str) -> bool:
        # The answer depends on the Host value alone and the policy never changes, so it is remembered:
        # parsing an IP literal on every request cost more than the rest of the host check. Bounded, so a
        # client sending random Host values cannot grow it.
        ok = self._seen.get(host)
        if ok is None:
            ok = self._decide(host)
            if len(self._seen) >= HOSTS_REMEMBERED:
                self._seen.clear()
            self._seen[host] = ok
        return ok

    def _decide(self, host: str) -> bool:
        name = host_name(host)
        if not name:
            return False
        if name in self.exact or is_ip(name):
            return True
        return any(name.endswith(s) for s in self.suffixes)


# The headers this layer reads, by their raw (ASGI: lower-case) name.
_READ = {n.encode(): n for n in ("host", "origin", "authorization", "cookie", "sec-websocket-protocol", "accept", "content-type", "sec-fetch-site")}


def _headers(scope: Scope) -> dict[str, str]:
    # Only the headers this layer reads; the first of each wins, as in HTTP for these fields. Names are
    # matched as bytes, so the headers it does not read are never decoded.
    out: dict[str, str] = {}
    for k, v in scope.get("headers") or ():
        name = _READ.get(k) or _READ.get(k.lower())
        if name is not None and name not in out:
            out[name] = v.decode("latin-1")
    return out


def is_own(origin: str, own: str) -> bool:
    """``origin`` names this very server: the same host and port (ketch serves http and https on one
    port, and a TLS-terminating proxy in front changes only the scheme)."""
    if origin == own:
        return True
    o, w = origin.partition("://"), own.partition("://")
    return bool(o[1]) and o[0] in ("http", "https") and o[2].lower() == w[2].lower()


def same_origin(h: dict[str, str], own: str) -> bool:
    """The request comes from ketch's own pages: its Origin is ketch's, or the browser (which alone sets
    Sec-Fetch-Site) says same-origin where it sends ``Origin: null`` (form posts under no-referrer)."""
    origin = h.get("origin")
    if origin is not None and is_own(origin, own):
        return True
    return origin in (None, "null") and h.get("sec-fetch-site") == "same-origin"


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return ""


def _ws_token(protocols: str) -> str:
    for p in protocols.split(","):
        p = p.strip()
        if p.startswith(WS_BEARER):
            raw = p[len(WS_BEARER):]
            try:
                return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            except (ValueError, UnicodeDecodeError):
                return ""
    return ""


def is_kube_path(path: str) -> bool:
    """A Kubernetes API path (``/api/v1/...``, ``/apis/<group>/<version>...``), not KFP's or the registry's."""
    if path == "/api" or path.startswith("/api/v1"):
        return True
    if path == "/apis":
        return True
    if path.startswith("/apis/"):
        first = path[6:].split("/", 1)[0]
        return "." in first or first in ("apps", "batch", "autoscaling", "policy")
    return path.startswith("/openapi") or path == "/version"


class AuthMiddleware:
    """Pure ASGI (no per-request object allocation beyond a small dict), so it costs microseconds."""

    def __init__(self, app: ASGIApp, authn: Authenticator, bind_host: str, allowed_hosts: list[str],
                 public: Callable[[Scope], bool] | None = None) -> None:
        self.app = app
        self.public = public
        self.authn = authn
        self.hosts = HostPolicy(bind_host, allowed_hosts)
        self._codes: dict[str, float] = {}

    def login_code(self) -> str:
        """A one-time code for the login URL ``ketch up`` prints (valid once, for an hour)."""
        now = time.monotonic()
        self._codes = {c: t for c, t in self._codes.items() if t > now}
        code = secrets.token_urlsafe(24)
        self._codes[code] = now + LOGIN_CODE_TTL_S
        return code

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        typ = scope["type"]
        if typ not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        h = _headers(scope)
        host = h.get("host", "")
        path = scope.get("path", "")
        if not self.hosts.allows(host):
            await self._deny(scope, send, 403, "Forbidden", f'host "{host_name(host)}" is not served here (DNS rebinding protection; '
                             "add it with ketch up --allowed-host)", path)
            return
        origin = h.get("origin")
        own = self._own_origin(scope, host) if origin is not None or path in OPEN else ""  # needed only then
        if typ == "websocket" and origin is not None and not is_own(origin, own):
            await self._deny(scope, send, 403, "Forbidden", f"websocket from origin {origin!r} refused: only {own} may open one", path)
            return
        if path in OPEN:
            if path in ("/login", "/logout"):
                await self._login(scope, receive, send, h, own)
            else:
                await self.app(scope, receive, send)
            return
        user: UserInfo | None = None
        auth = h.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not bearer and typ == "websocket":
            bearer = _ws_token(h.get("sec-websocket-protocol", ""))
        if bearer:
            user = self.authn.authenticate(bearer)
        else:
            cookie = _cookie(h.get("cookie", ""), COOKIE)
            if cookie:
                user = self.authn.authenticate_session(cookie)
                if user is not None:
                    method = scope.get("method", "GET")
                    unsafe = typ == "websocket" or method not in SAFE_METHODS
                    if not same_origin(h, own) and (unsafe or origin is not None):
                        await self._deny(scope, send, 403, "Forbidden",
                                         f"cross-origin request refused: {scope.get('method', 'GET')} {path} with a session cookie "
                                         f"must come from {own or self._own_origin(scope, host)} (Origin: {origin})", path)
                        return
        if user is None and not bearer and self.public is not None and self.public(scope):
            # A public InferenceService: no credential needed; the authorization layer sees the anonymous user.
            user = UserInfo("system:anonymous", "", ("system:unauthenticated",))
        if user is None:
            if typ == "http" and path == "/" and "text/html" in h.get("accept", ""):
                await _redirect(send, "/login")
                return
            await self._deny(scope, send, 401, "Unauthorized", "Unauthorized" if not bearer else "Unauthorized: the token is not valid", path)
            return
        scope["ketch.user"] = user
        await self.app(scope, receive, send)

    def _own_origin(self, scope: Scope, host: str) -> str:
        scheme = scope.get("scheme", "http")
        scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        return f"{scheme}://{host}"

    async def _deny(self, scope: Scope, send: Send, code: int, reason: str, message: str, path: str) -> None:
        if scope["type"] == "websocket":
            # Refuse the upgrade itself (a plain HTTP answer before accept), as kube-apiserver does.
            await send({"type": "websocket.http.response.start", "status": code,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "websocket.http.response.body", "body": _status_body(code, reason, message)})
            return
        headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
        if code == 401:
            headers.append((b"www-authenticate", b'Bearer realm="ketch"'))
        if is_kube_path(path) or path.startswith("/apis/"):
            body = _status_body(code, reason, message)
        elif path.startswith("/api/model_registry/"):  # the registry's own error shape (its clients parse it)
            body = orjson.dumps({"code": str(code), "message": message})
        else:
            body = orjson.dumps({"error": message, "message": message, "code": code})
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # -- the dashboard's login -------------------------------------------------------------------------

    async def _login(self, scope: Scope, receive: Receive, send: Send, h: dict[str, str], own: str) -> None:
        method = scope.get("method", "GET")
        path = scope["path"]
        if scope["type"] != "http":
            await self._deny(scope, send, 404, "NotFound", "not found", path)
            return
        if path == "/logout":
            if method != "POST" or not same_origin(h, own):
                await self._deny(scope, send, 403, "Forbidden", "log out with a POST from the dashboard", path)
                return
            await _redirect(send, "/login", cookie=f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
            return
        if method == "GET":
            q = parse_qs(scope.get("query_string", b"").decode())
            code = (q.get("code") or [""])[0]
            if code:
                exp = self._codes.pop(code, None)
                if exp is None or exp < time.monotonic():
                    await _page(send, 401, "That login link was already used or has expired. Paste your token "
                                "(<code>ketch token</code> prints it).")
                    return
                await self._set_session(scope, send, UserInfo("admin", "admin", ("system:masters", "system:authenticated")))
                return
            await _page(send, 200, "")
            return
        if method != "POST":
            await self._deny(scope, send, 405, "MethodNotAllowed", "GET or POST", path)
            return
        if not same_origin(h, own) and (h.get("origin") is not None or h.get("sec-fetch-site") not in (None, "none")):
            await self._deny(scope, send, 403, "Forbidden", "the login form must be posted from this server's own page", path)
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if len(body) > 16384:
                await self._deny(scope, send, 413, "RequestEntityTooLarge", "login form too large", path)
                return
            if not msg.get("more_body"):
                break
        token = (parse_qs(body.decode(errors="replace")).get("token") or [""])[0].strip()
        user = self.authn.authenticate(token)
        if user is None:
            await _page(send, 401, "That token is not valid.")
            return
        await self._set_session(scope, send, user, not_after=self.authn.expiry(token))

    async def _set_session(self, scope: Scope, send: Send, user: UserInfo, not_after: float | None = None) -> None:
        ttl = 43200 if not_after is None else max(0, min(43200, int(not_after - time.time())))
        value = self.authn.session_token(user, not_after=not_after)
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        await _redirect(send, "/", cookie=f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={ttl}{secure}")


def _status_body(code: int, reason: str, message: str) -> bytes:
    return orjson.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                         "message": message, "reason": reason, "code": code})


async def _redirect(send: Send, location: str, cookie: str | None = None) -> None:
    headers = [(b"location", location.encode()), (b"cache-control", b"no-store")]
    if cookie:
        headers.append((b"set-cookie", cookie.encode()))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


LOGIN_HTML = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ketch: log in</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{font:15px system-ui,sans-serif;background:#f4f6f8;margin:0;display:grid;place-items:center;height:100vh}
form{background:#fff;padding:28px 32px;border-radius:8px;box-shadow:0 1px 4px #0002;width:380px}
h1{font-size:20px;margin:0 0 14px}input{width:100%;box-sizing:border-box;padding:8px;margin:8px 0 14px;font:inherit}
button{padding:8px 18px;font:inherit;background:#1a73e8;color:#fff;border:0;border-radius:4px;cursor:pointer}
.err{color:#b00020;margin:0 0 10px}code{background:#eef;padding:1px 4px}</style></head>
<body><form method="post" action="/login"><h1>ketch</h1>{error}
<label for="token">Token</label><input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<p style="color:#555;font-size:13px">Run <code>ketch token</code> on the machine ketch runs on to print the admin token, or open the
login link <code>ketch up</code> printed.</p><button type="submit">Log in</button></form></body></html>"""


async def _page(send: Send, status: int, error: str) -> None:
    err = f'<p class="err" role="alert">{error}</p>' if error else ""
    body = LOGIN_HTML.replace("{error}", err).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"),
        (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
        (b"x-frame-options", b"DENY")]})
    await send({"type": "http.response.body", "body": body})
