"""The per-request shortcuts of the auth layer (remembered Host answers, one hash per token, identities built
once per token-file load) decide exactly what the slow path did: a token removed from tokens.csv stops
working on the next request, a foreign Host stays refused however many hosts were seen before."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ketch.machinery.authn import AUTHENTICATED, Authenticator
from ketch.server.auth import HOSTS_REMEMBERED, AuthMiddleware, HostPolicy, _headers


def test_token_file_edits_take_effect_on_the_next_request(tmp_path: Path) -> None:
    a = Authenticator(tmp_path, lambda kind, ns, name: None)
    admin = a.authenticate(a.admin_token)
    assert admin is not None and admin.name == "admin" and AUTHENTICATED in admin.groups and "system:masters" in admin.groups
    a.tokens.add("tok-bob", "bob", "u-bob", ["dev"])
    bob = a.authenticate("tok-bob")
    assert bob is not None and bob.groups == ("dev", AUTHENTICATED)
    a.tokens.path.write_text(a.tokens.path.read_text().replace("tok-bob,bob", "tok-bob2,bob"))
    assert a.authenticate("tok-bob") is None
    assert a.authenticate("tok-bob2") is not None
    assert a.authenticate("") is None and a.authenticate("x.y.z") is None


def test_host_answers_are_remembered_but_never_change(tmp_path: Path) -> None:
    hp = HostPolicy("127.0.0.1", ["ketch.example.org"])
    cases = {"127.0.0.1:8080": True, "localhost": True, "m.default.localhost:8080": True, "[::1]:80": True,
             "ketch.example.org": True, "evil.example.com": False, "": False, "localhost.evil.com": False}
    for _ in range(3):
        assert {h: hp.allows(h) for h in cases} == cases
    for i in range(HOSTS_REMEMBERED * 3):
        assert not hp.allows(f"rebind-{i}.attacker.test")
        assert len(hp._seen) <= HOSTS_REMEMBERED
    assert not hp.allows("evil.example.com") and hp.allows("localhost:8080")


def test_headers_read_whatever_the_case_first_wins() -> None:
    h = _headers({"headers": [(b"Host", b"a"), (b"host", b"b"), (b"AUTHORIZATION", b"Bearer t"), (b"x-other", b"\xff")]})
    assert h == {"host": "a", "authorization": "Bearer t"}


def test_layer_refuses_and_admits_as_before(tmp_path: Path) -> None:
    a = Authenticator(tmp_path, lambda kind, ns, name: None)
    seen: list[str] = []

    async def inner(scope, receive, send) -> None:  # noqa: ANN001
        seen.append(scope["ketch.user"].name)

    sent: list[dict] = []

    async def send(msg: dict) -> None:
        sent.append(msg)

    mw = AuthMiddleware(inner, a, "127.0.0.1", [])

    def call(host: bytes, token: str) -> int | None:
        sent.clear()
        scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/api/v1/namespaces/default/configmaps/x",
                 "headers": [(b"host", host), (b"authorization", f"Bearer {token}".encode())]}
        # in a thread of its own: other tests' fixtures (playwright) may hold a running loop in this one
        with ThreadPoolExecutor(1) as ex:
            ex.submit(asyncio.run, mw(scope, None, send)).result()  # type: ignore[arg-type]
        return sent[0]["status"] if sent else None

    assert call(b"127.0.0.1:1", a.admin_token) is None and seen == ["admin"]
    assert call(b"127.0.0.1:1", "wrong") == 401
    assert call(b"evil.example.com", a.admin_token) == 403
    assert call(b"evil.example.com", a.admin_token) == 403  # remembered, still refused
    assert seen == ["admin"]
