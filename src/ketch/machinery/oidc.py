"""OpenID Connect ID tokens as kube-apiserver accepts them (``--oidc-*`` flags).

Teams with an identity provider (Dex, Keycloak, ...) hand their users ID tokens; ketch verifies them
against the issuer's discovery document and its JWKS with PyJWT's ``PyJWKClient`` (keys cached, the set
refetched when a token names a key id it does not know, at most once per cooldown so a stream of forged
kids cannot hammer the issuer). Checked: the signature (RS256/ES256 family, never ``none`` or HMAC), ``iss``
equal to the configured issuer URL, ``aud`` containing the client id, ``exp`` and ``nbf``.

The identity follows kube-apiserver's rules:

- the user name is the ``--oidc-username-claim`` (default ``sub``); unless ``--oidc-username-prefix`` is
  given, names from claims other than ``email`` are prefixed with ``<issuer-url>#`` so they can never
  collide with static users or ServiceAccounts; ``-`` means no prefix at all;
- with the ``email`` claim, a token whose ``email_verified`` is false is refused;
- groups come from ``--oidc-groups-claim`` (a string or a list of strings), each with
  ``--oidc-groups-prefix``; every user is also in ``system:authenticated``.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from dataclasses import dataclass

import httpx
import jwt

log = logging.getLogger(__name__)

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]
AUTHENTICATED = "system:authenticated"
FETCH_TIMEOUT_S = 5.0  # verification runs on the request path: an unreachable issuer must fail fast
DISCOVERY_RETRY_S = 10.0  # a failed discovery is not retried by every request naming the issuer


@dataclass(frozen=True)
class OIDCConfig:
    """The ``--oidc-*`` settings of ``ketch up``."""

    issuer_url: str
    client_id: str
    username_claim: str = "sub"
    username_prefix: str | None = None  # None: kube-apiserver's default (see module docstring)
    groups_claim: str | None = None
    groups_prefix: str = ""
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.issuer_url.startswith(("https://", "http://")):
            raise ValueError(f"--oidc-issuer-url: {self.issuer_url!r} is not an http(s) URL")
        if not self.client_id:
            raise ValueError("--oidc-client-id is required with --oidc-issuer-url")

    def name_prefix(self) -> str:
        if self.username_prefix == "-":
            return ""
        if self.username_prefix is not None:
            return self.username_prefix
        return "" if self.username_claim == "email" else f"{self.issuer_url}#"


class OIDCVerifier:
    """Verifies ID tokens of one issuer; returns the claims' identity as (name, groups) or None."""

    def __init__(self, cfg: OIDCConfig) -> None:
        self.cfg = cfg
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()
        self._failed_at = -DISCOVERY_RETRY_S  # when discovery last failed: not retried sooner than DISCOVERY_RETRY_S

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cfg.ca_file) if self.cfg.ca_file else ssl.create_default_context()

    def _client(self) -> jwt.PyJWKClient:
        """The JWKS client, made from the discovery document on first use (the issuer may start after ketch)."""
        if self._jwks is not None:
            return self._jwks
        with self._lock:
            if self._jwks is None:
                if time.monotonic() - self._failed_at < DISCOVERY_RETRY_S:
                    raise ValueError("the issuer's discovery failed recently; not retried yet")
                try:
                    self._jwks = self._discover()
                except Exception:
                    self._failed_at = time.monotonic()
                    raise
        return self._jwks

    def _discover(self) -> jwt.PyJWKClient:
        """Fetch the discovery document and make the JWKS client for its ``jwks_uri``."""
        url = self.cfg.issuer_url.rstrip("/") + "/.well-known/openid-configuration"
        doc = httpx.get(url, timeout=FETCH_TIMEOUT_S, verify=self._ssl()).raise_for_status().json()
        if doc.get("issuer") != self.cfg.issuer_url:
            # OIDC discovery requires the document's issuer to be the URL it was fetched for
            raise ValueError(f"discovery document at {url} names issuer {doc.get('issuer')!r}, not {self.cfg.issuer_url!r}")
        return jwt.PyJWKClient(doc["jwks_uri"], cache_jwk_set=True, lifespan=300, timeout=FETCH_TIMEOUT_S,
                               ssl_context=self._ssl() if doc["jwks_uri"].startswith("https:") else None, cooldown_duration=5)

    def claims(self, token: str) -> dict | None:
        """The verified claims of ``token``, or None (with the reason logged at debug level)."""
        try:
            key = self._client().get_signing_key_from_jwt(token)
            return jwt.decode(token, key.key, algorithms=ALGORITHMS, audience=self.cfg.client_id, issuer=self.cfg.issuer_url,
                              leeway=0, options={"require": ["exp", "iss", "aud"]})
        except (jwt.PyJWTError, httpx.HTTPError, ValueError, KeyError, OSError) as e:
            log.debug("OIDC token refused: %s", e)
            return None

    def identity(self, token: str) -> tuple[str, tuple[str, ...]] | None:
        claims = self.claims(token)
        if claims is None:
            return None
        cfg = self.cfg
        value = claims.get(cfg.username_claim)
        if not isinstance(value, str) or not value:
            log.debug("OIDC token refused: no string claim %r", cfg.username_claim)
            return None
        if cfg.username_claim == "email" and claims.get("email_verified", True) is not True:
            log.debug("OIDC token refused: email_verified is not true")
            return None
        groups: list[str] = []
        if cfg.groups_claim:
            raw = claims.get(cfg.groups_claim)
            if isinstance(raw, str):
                raw = [raw]
            if raw is not None and not (isinstance(raw, list) and all(isinstance(g, str) for g in raw)):
                log.debug("OIDC token refused: claim %r is not a string or a list of strings", cfg.groups_claim)
                return None
            groups = [cfg.groups_prefix + g for g in raw or []]
        return cfg.name_prefix() + value, (*groups, AUTHENTICATED)
