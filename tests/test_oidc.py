"""OIDC ID tokens on a real ketch, against a small issuer this test runs on loopback (discovery document and
JWKS over HTTP, tokens signed with freshly generated RSA keys): kubectl --token with an ID token is the
claimed user (with kube-apiserver's ``<issuer>#`` prefix) in the claimed groups, RBAC applies to both, and
every broken token (expired, not yet valid, wrong audience or issuer, unknown key, tampered signature) is 401.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import free_port, make_ketch, wait_for

CLIENT_ID = "ketch-test"


class Issuer:
    """A minimal OpenID provider: /.well-known/openid-configuration and /keys, serving ``self.keys``."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.keys: dict[str, object] = {}  # kid -> private key; the JWKS publishes their public halves
        self.jwks_hits = 0
        issuer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/keys", "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
                elif self.path == "/keys":
                    issuer.jwks_hits += 1
                    body = {"keys": [issuer.jwk(kid, k) for kid, k in list(issuer.keys.items())]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def jwk(kid: str, key) -> dict:
        if isinstance(key, rsa.RSAPrivateKey):
            d = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            return {**d, "kid": kid, "use": "sig", "alg": "RS256"}
        d = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {**d, "kid": kid, "use": "sig", "alg": "ES256"}

    def new_key(self, kind: str = "rsa", publish: bool = True) -> tuple[str, object]:
        kid = uuid.uuid4().hex[:12]
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())
        if publish:
            self.keys[kid] = key
        return kid, key

    def token(self, sub: str, groups: list[str] | None = None, *, kid: str | None = None, key=None, **over) -> str:
        if kid is None:
            kid, key = next(iter(self.keys.items()))
        now = int(time.time())
        claims = {"iss": self.url, "sub": sub, "aud": CLIENT_ID, "iat": now, "exp": now + 600, **over}
        if groups is not None:
            claims["groups"] = groups
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    iss = Issuer()
    iss.new_key("rsa")
    # the client id by environment variable (ketch's pattern for flags), the rest by flag
    k = make_ketch(tmp_path_factory.mktemp("oidc"), env={"KETCH_OIDC_CLIENT_ID": CLIENT_ID},
                   extra_args=["--oidc-issuer-url", iss.url, "--oidc-groups-claim", "groups", "--oidc-groups-prefix", "oidc:"])
    k.start()
    try:
        for ns in ("team", "alice-ns", "other"):
            k.kubectl("create", "namespace", ns)
        k.kubectl("create", "rolebinding", "devs-view", "-n", "team", "--clusterrole=view", "--group=oidc:devs")
        k.kubectl("create", "rolebinding", "alice-edit", "-n", "alice-ns", "--clusterrole=edit", f"--user={iss.url}#alice")
        yield k, iss
    finally:
        k.stop()
        iss.server.shutdown()


def kubectl_as(k, token: str, *args: str):
    return k.kubectl("--token", token, *args, check=False)


def test_id_token_is_the_claimed_user_and_groups(env):
    k, iss = env
    tok = iss.token("alice", ["devs", "ml"])
    r = kubectl_as(k, tok, "auth", "whoami", "-o", "json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)["status"]["userInfo"]
    assert status["username"] == f"{iss.url}#alice"  # kube-apiserver's default prefix for claims other than email
    assert set(status["groups"]) == {"oidc:devs", "oidc:ml", "system:authenticated"}


def test_rbac_applies_to_the_user_and_its_groups(env):
    k, iss = env
    alice = iss.token("alice", ["devs"])
    bob = iss.token("bob", [])
    # the group's RoleBinding: view in team
    assert kubectl_as(k, alice, "get", "pods", "-n", "team").returncode == 0
    r = kubectl_as(k, alice, "create", "configmap", "x", "-n", "team")
    assert r.returncode != 0 and "forbidden" in r.stderr.lower() and f"{iss.url}#alice" in r.stderr
    # the user's RoleBinding: edit in alice-ns
    assert kubectl_as(k, alice, "create", "configmap", "x", "-n", "alice-ns").returncode == 0
    # nothing elsewhere
    assert "forbidden" in kubectl_as(k, alice, "get", "pods", "-n", "other").stderr.lower()
    # bob is not in devs: nothing in team
    r = kubectl_as(k, bob, "get", "pods", "-n", "team")
    assert r.returncode != 0 and "forbidden" in r.stderr.lower()
    r = kubectl_as(k, bob, "auth", "can-i", "list", "pods", "-n", "team")
    assert r.stdout.strip() == "no"
    r = kubectl_as(k, alice, "auth", "can-i", "list", "pods", "-n", "team")
    assert r.stdout.strip() == "yes"


def test_bad_tokens_are_401(env):
    k, iss = env
    now = int(time.time())
    kid, key = next(iter(iss.keys.items()))
    good = iss.token("alice", ["devs"])
    head, payload, sig = good.split(".")
    mid = len(sig) // 2
    tampered = f"{head}.{payload}.{sig[:mid]}{'A' if sig[mid] != 'A' else 'B'}{sig[mid + 1:]}"
    # a payload changed under the original signature
    forged_claims = jwt.decode(good, options={"verify_signature": False}) | {"sub": "admin"}
    forged_payload = jwt.utils.base64url_encode(json.dumps(forged_claims).encode()).decode()
    stranger_kid, stranger_key = iss.new_key("rsa", publish=False)
    bad = {
        "expired": iss.token("alice", exp=now - 120, iat=now - 900),
        "not yet valid": iss.token("alice", nbf=now + 600),
        "wrong audience": iss.token("alice", aud="someone-else"),
        "wrong issuer": iss.token("alice", iss="http://127.0.0.1:1/evil"),
        "unknown key": iss.token("alice", kid=stranger_kid, key=stranger_key),
        "known kid, other key": iss.token("alice", kid=kid, key=stranger_key),
        "tampered signature": tampered,
        "tampered payload": f"{head}.{forged_payload}.{sig}",
        "alg none": jwt.encode({"iss": iss.url, "sub": "alice", "aud": CLIENT_ID, "exp": now + 600}, None, algorithm="none"),
        "no exp": jwt.encode({"iss": iss.url, "sub": "alice", "aud": CLIENT_ID}, key, algorithm="RS256", headers={"kid": kid}),
    }
    with httpx.Client(base_url=k.url, timeout=30) as c:
        ok = c.get("/api/v1/namespaces/team/pods", headers={"Authorization": f"Bearer {good}"})
        assert ok.status_code == 200, ok.text
        for what, tok in bad.items():
            r = c.get("/api/v1/namespaces/team/pods", headers={"Authorization": f"Bearer {tok}"})
            assert r.status_code == 401, (what, r.status_code, r.text)
    r = kubectl_as(k, bad["expired"], "get", "pods", "-n", "team")
    assert r.returncode != 0 and "unauthorized" in r.stderr.lower()


def test_rotated_key_is_fetched_and_ec_keys_work(env):
    """A token naming a kid the cached JWKS lacks makes ketch refetch the set (after its cooldown)."""
    k, iss = env
    kid, key = iss.new_key("ec")  # ES256, published after ketch cached the set
    tok = iss.token("carol", ["devs"], kid=kid, key=key)
    hits = iss.jwks_hits

    def ok() -> bool:
        with httpx.Client(base_url=k.url, timeout=30) as c:
            return c.get("/api/v1/namespaces/team/pods", headers={"Authorization": f"Bearer {tok}"}).status_code == 200

    wait_for(ok, timeout=40, interval=1, what="the rotated key to be fetched")
    assert iss.jwks_hits > hits


def self_signed(d) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as files (the issuer's; ketch trusts it by --oidc-ca-file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-issuer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, pem = d / "issuer.crt", d / "issuer.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(crt), str(pem)


def test_https_issuer_with_ca_file_and_email_claim(tmp_path):
    """An HTTPS issuer trusted through --oidc-ca-file; with the email claim names carry no prefix (as
    kube-apiserver), an unverified email is refused, and an issuer whose certificate ketch does not trust
    authenticates nobody."""
    tls = self_signed(tmp_path)
    iss = Issuer(tls)
    iss.new_key("rsa")
    k = make_ketch(tmp_path, extra_args=["--oidc-issuer-url", iss.url, "--oidc-client-id", CLIENT_ID, "--oidc-username-claim", "email",
                                         "--oidc-ca-file", tls[0]])
    k.start()
    try:
        tok = iss.token("u-123", email="alice@example.com", email_verified=True)
        r = kubectl_as(k, tok, "auth", "whoami", "-o", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["status"]["userInfo"]["username"] == "alice@example.com"
        with httpx.Client(base_url=k.url, timeout=30) as c:
            for bad in (iss.token("u-123", email="alice@example.com", email_verified=False), iss.token("u-123")):
                assert c.get("/api/v1/namespaces", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    finally:
        k.stop()
    # the same issuer without the CA file: its certificate is not trusted, so its tokens are refused
    k2 = make_ketch(tmp_path / "untrusted", extra_args=["--oidc-issuer-url", iss.url, "--oidc-client-id", CLIENT_ID])
    k2.start()
    try:
        with httpx.Client(base_url=k2.url, timeout=30) as c:
            tok = iss.token("alice")
            assert c.get("/api/v1/namespaces", headers={"Authorization": f"Bearer {tok}"}).status_code == 401
    finally:
        k2.stop()
        iss.server.shutdown()


def test_a_dashboard_session_from_an_id_token_ends_with_the_token(env):
    """The login form takes an ID token; the session it makes must not outlive it (else a 5-minute token
    would be a 12-hour session)."""
    k, iss = env
    exp = int(time.time()) + 8
    tok = iss.token("alice", ["devs"], exp=exp)
    with httpx.Client(base_url=k.url, follow_redirects=False) as h:
        r = h.post("/login", data={"token": tok}, headers={"Origin": k.url})
        assert r.status_code == 303, r.text
        max_age = int(re.search(r"Max-Age=(\d+)", r.headers["set-cookie"]).group(1))
        assert 0 < max_age <= 8, r.headers["set-cookie"]
        cookie = r.cookies["ketch_session"]
    with httpx.Client(base_url=k.url, cookies={"ketch_session": cookie}) as h:
        assert h.get("/api/v1/namespaces/team/pods").status_code == 200  # group devs has view in team
        time.sleep(max(0.0, exp + 1.5 - time.time()))
        assert h.get("/api/v1/namespaces/team/pods").status_code == 401
