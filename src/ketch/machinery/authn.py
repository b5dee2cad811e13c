"""Who is calling: bearer tokens to identities, without HTTP.

Two kinds of credential, as kube-apiserver has them:

- **Static tokens** in ``KETCH_HOME/tokens.csv``, kube-apiserver's ``--token-auth-file`` format
  (``token,user,uid,"group1,group2"``). The first start writes one for ``admin`` in ``system:masters``;
  the file is re-read when it changes, so users added to it take effect without a restart.
- **ServiceAccount tokens**: JWTs signed with a key kept in ``KETCH_HOME/sa.key`` (HS256, since the only
  verifier is ketch itself), with the claims Kubernetes puts in bound tokens (``sub``
  ``system:serviceaccount:<ns>:<name>``, ``kubernetes.io`` with namespace, serviceaccount and pod). A
  token bound to a Pod stops working when that Pod is gone (or replaced by one with another uid), one
  bound to a ServiceAccount when the account is gone: the object lookup is what revokes them.

- **OIDC ID tokens** from one external issuer when ``ketch up --oidc-issuer-url`` is given
  (``machinery/oidc.py``), as kube-apiserver's ``--oidc-*`` flags.

Dashboard sessions are JWTs from the same key with their own audience, so a session cookie can never be
used as an API token nor the other way round.

Everything on disk here is private (0600 in a 0700 home): these files are the keys to the machine.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ketch.machinery.hosts import host_name, is_ip, is_loopback  # noqa: F401 - re-exported for the server

if TYPE_CHECKING:
    from ketch.machinery.oidc import OIDCConfig

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCE = ISSUER  # what kube-apiserver accepts by default: its own issuer
SESSION_AUDIENCE = "ketch-dashboard"
ADMIN = "admin"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated identity, as Kubernetes' user.Info."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def service_account(self) -> tuple[str, str] | None:
        """(namespace, name) when this is a ServiceAccount."""
        p = self.name.split(":")
        if len(p) == 4 and p[0] == "system" and p[1] == "serviceaccount":
            return p[2], p[3]
        return None

    def to_status(self) -> dict:
        out: dict = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            out["uid"] = self.uid
        if self.extra:
            out["extra"] = self.extra
        return out


def private_file(path: Path, data: str) -> None:
    """Write ``data`` to ``path`` atomically, readable by this user alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.replace(tmp, path)


def _digest(token: str) -> bytes:
    # Tokens are looked up by their hash: a dict probe on a secret would leak timing on partial matches.
    return hashlib.sha256(token.encode()).digest()


class TokenFile:
    """The static token file, loaded by content hash and re-read when it changes: its mtime, size or inode
    (an edit within the filesystem's timestamp tick still changes the size, a rewrite the inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fspath = os.fspath(path)  # os.stat on a str: Path.stat's overhead is per request here
        self._stamp: tuple[int, int, int] | None = None
        self._users: dict[bytes, UserInfo] = {}
        self._lock = threading.Lock()

    def ensure_admin(self) -> str:
        """The admin token, creating the file with one on first start."""
        if not self.path.exists():
            token = secrets.token_urlsafe(32)
            private_file(self.path, f'{token},{ADMIN},{ADMIN},"{MASTERS}"\n')
        os.chmod(self.path, 0o600)
        for row in self.rows():
            if row[1] == ADMIN:
                return row[0]
        token = secrets.token_urlsafe(32)
        self.add(token, ADMIN, ADMIN, [MASTERS])
        return token

    def rows(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [r for r in csv.reader(io.StringIO(self.path.read_text())) if len(r) >= 2 and r[0].strip()]

    def add(self, token: str, user: str, uid: str, groups: list[str]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([token, user, uid, ",".join(groups)])
        existing = self.path.read_text() if self.path.exists() else ""
        if existing and not existing.endswith("\n"):
            existing += "\n"
        private_file(self.path, existing + buf.getvalue())

    def lookup(self, token: str) -> UserInfo | None:
        return self.lookup_digest(_digest(token))

    def lookup_digest(self, digest: bytes) -> UserInfo | None:
        """The user whose token hashes to ``digest``, in ``system:authenticated`` besides the file's groups
        (the file is re-read if it changed since last time)."""
        try:
            st = os.stat(self._fspath)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            return None
        if stamp != self._stamp:
            with self._lock:
                users = {}
                for r in self.rows():
                    groups = tuple(g for g in (r[3].split(",") if len(r) > 3 else []) if g)
                    # the identity the token authenticates as, built once per load rather than per request
                    users[_digest(r[0])] = UserInfo(r[1], r[2] if len(r) > 2 else "", (*groups, AUTHENTICATED))
                self._users, self._stamp = users, stamp
        return self._users.get(digest)


class Signer:
    """JWTs for ServiceAccounts and dashboard sessions, signed with the installation's key."""

    def __init__(self, key_path: Path) -> None:
        if not key_path.exists():
            private_file(key_path, secrets.token_hex(32) + "\n")
        os.chmod(key_path, 0o600)
        self.key = key_path.read_text().strip()

    def sign(self, claims: dict) -> str:
        import jwt

        return jwt.encode(claims, self.key, algorithm="HS256")

    def verify(self, token: str, audience: str) -> dict | None:
        import jwt

        try:
            return jwt.decode(token, self.key, algorithms=["HS256"], audience=audience, issuer=ISSUER,
                              options={"require": ["exp", "sub"]})
        except jwt.PyJWTError:
            return None


def _issuer(token: str) -> str | None:
    """The ``iss`` a JWT claims, unverified: only to pick the verifier."""
    import jwt

    try:
        iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None
    return iss if isinstance(iss, str) else None


# (kind, namespace, name) -> uid of the object now, or None when it does not exist.
Lookup = Callable[[str, str, str], str | None]


class Authenticator:
    """Turns a bearer token into a UserInfo (or None): static tokens first, then signed tokens (ketch's
    own, or the OIDC issuer's, told apart by their unverified ``iss``)."""

    CACHE_S = 5.0  # how long a verified JWT's object check is trusted (a deleted Pod's token dies within it)

    def __init__(self, home: Path, lookup: Lookup, oidc: OIDCConfig | None = None) -> None:
        from ketch.machinery.oidc import OIDCVerifier

        self.oidc = OIDCVerifier(oidc) if oidc else None
        self.tokens = TokenFile(home / "tokens.csv")
        self.admin_token = self.tokens.ensure_admin()
        self.signer = Signer(home / "sa.key")
        self.lookup = lookup
        self._cache: dict[bytes, tuple[float, UserInfo]] = {}
        # ketch's own controllers, when they go through the HTTP API (reading pods/log, say): an identity
        # that lives in this process's memory only, never on disk.
        self._internal = secrets.token_urlsafe(32)
        self._internal_user = UserInfo("system:ketch-controller-manager", "", (MASTERS, AUTHENTICATED))

    def internal_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._internal}"}

    # -- issuing ---------------------------------------------------------------------------------------

    def service_account_token(self, namespace: str, name: str, uid: str, *, pod: tuple[str, str] | None = None,
                              expiration_seconds: int = 3600, audiences: list[str] | None = None) -> tuple[str, int]:
        """A bound token for ServiceAccount ``namespace/name`` (bound to the Pod ``(name, uid)`` if given),
        and its expiry as a Unix time. The TokenRequest API and the kubelet's projected token use this."""
        now = int(time.time())
        exp = now + max(600, int(expiration_seconds))
        k8s: dict = {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
        if pod is not None:
            k8s["pod"] = {"name": pod[0], "uid": pod[1]}
        claims = {"iss": ISSUER, "sub": f"system:serviceaccount:{namespace}:{name}", "aud": audiences or [API_AUDIENCE],
                  "iat": now, "nbf": now, "exp": exp, "jti": secrets.token_hex(8), "kubernetes.io": k8s}
        return self.signer.sign(claims), exp

    def session_token(self, user: UserInfo, ttl_s: int = 12 * 3600, not_after: float | None = None) -> str:
        """A dashboard session for ``user``: 12 hours, and never past ``not_after`` (the expiry of the token
        it was made from: a session must not outlive an OIDC ID token or a ServiceAccount token)."""
        now = int(time.time())
        if not_after is not None:
            ttl_s = max(0, min(ttl_s, int(not_after) - now))
        return self.signer.sign({"iss": ISSUER, "sub": user.name, "uid": user.uid, "groups": list(user.groups),
                                 "aud": SESSION_AUDIENCE, "iat": now, "exp": now + ttl_s})

    # -- verifying -------------------------------------------------------------------------------------

    @staticmethod
    def expiry(token: str) -> float | None:
        """The ``exp`` of a JWT bearer token (read only after ``authenticate`` accepted it), else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except ValueError:
            return None
        exp = claims.get("exp") if isinstance(claims, dict) else None
        return float(exp) if isinstance(exp, int | float) else None

    def authenticate(self, token: str) -> UserInfo | None:
        if not token:
            return None
        if hmac.compare_digest(token, self._internal):
            return self._internal_user
        key = _digest(token)  # hashed once: the static lookup and the JWT cache share it
        user = self.tokens.lookup_digest(key)
        if user is not None:
            return user
        if token.count(".") != 2:
            return None
        if self.oidc is not None and _issuer(token) == self.oidc.cfg.issuer_url:
            # not cached: exp is checked on every use, and an RS256 verification with a cached key is cheap
            ident = self.oidc.identity(token)
            return UserInfo(ident[0], "", ident[1]) if ident else None
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.CACHE_S:
            return hit[1]
        claims = self.signer.verify(token, API_AUDIENCE)
        user = self._service_account(claims) if claims else None
        if user is None:
            self._cache.pop(key, None)
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now, user)
        return user

    def _service_account(self, claims: dict) -> UserInfo | None:
        k8s = claims.get("kubernetes.io") or {}
        ns, sa = k8s.get("namespace"), (k8s.get("serviceaccount") or {})
        if not ns or not sa.get("name") or claims.get("sub") != f"system:serviceaccount:{ns}:{sa['name']}":
            return None
        pod = k8s.get("pod")
        extra: dict = {}
        if pod:  # bound to a Pod: valid while that very Pod exists
            if self.lookup("Pod", ns, pod.get("name", "")) != pod.get("uid"):
                return None
            extra = {"authentication.kubernetes.io/pod-name": [pod["name"]], "authentication.kubernetes.io/pod-uid": [pod["uid"]]}
        elif self.lookup("ServiceAccount", ns, sa["name"]) != sa.get("uid"):
            return None
        return UserInfo(claims["sub"], sa.get("uid", ""), ("system:serviceaccounts", f"system:serviceaccounts:{ns}", AUTHENTICATED), extra)

    def authenticate_session(self, cookie: str) -> UserInfo | None:
        claims = self.signer.verify(cookie, SESSION_AUDIENCE) if cookie else None
        if not claims:
            return None
        return UserInfo(claims["sub"], claims.get("uid", ""), tuple(claims.get("groups") or ()))

    def check_admin(self, token: str) -> bool:
        return hmac.compare_digest(_digest(token), _digest(self.admin_token))
