"""A TLS front for a ketch under test: a self-signed certificate for 127.0.0.1 and a thread relaying TLS
connections to ketch's plain-HTTP port, byte for byte (WebSocket upgrades and watch streams included).

Used where a client insists on HTTPS: the kubernetes Python client's own e2e suite sets
``assert_hostname``, which urllib3 2 accepts only for HTTPS connections, the way clusters are reached.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import yaml


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ketch-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cp, kp = directory / "tls.crt", directory / "tls.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cp, kp


class TLSProxy:
    def __init__(self, target_port: int, directory: Path) -> None:
        self.target_port = target_port
        self.cert, self.key = self_signed(directory)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TLSProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(["http/1.1"])

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            with contextlib.suppress(Exception):
                w.close()

        async def frames(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            """After a WebSocket upgrade, relay the server's frames one TLS record each, as a server
            writing frame by frame does: the Python client's select() loop misses a frame that shares a
            record with the one before it."""
            with contextlib.suppress(ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
                head = await r.readuntil(b"\r\n\r\n")
                w.write(head)
                await w.drain()
                if not head.startswith(b"HTTP/1.1 101"):
                    return await pipe(r, w)
                while True:
                    h = await r.readexactly(2)
                    n = h[1] & 0x7F
                    ext = await r.readexactly(2 if n == 126 else 8 if n == 127 else 0)
                    size = int.from_bytes(ext, "big") if ext else n
                    w.write(h + ext + await r.readexactly(size))
                    await w.drain()
            with contextlib.suppress(Exception):
                w.close()

        async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
            try:
                ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                cw.close()
                return
            first = await cr.read(65536)  # the request head: a WebSocket upgrade gets frame-by-frame relaying
            uw.write(first)
            back = frames(ur, cw) if b"upgrade: websocket" in first.lower() else pipe(ur, cw)
            await asyncio.gather(pipe(cr, uw), back)

        async def start() -> None:
            await asyncio.start_server(handle, "127.0.0.1", self.port, ssl=ctx)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def kubeconfig(self, source: Path, dest: Path) -> Path:
        """``source`` (ketch's kubeconfig) pointed at this proxy, trusting its certificate."""
        cfg = yaml.safe_load(source.read_text())
        for c in cfg["clusters"]:
            c["cluster"] = {"server": f"https://127.0.0.1:{self.port}",
                            "certificate-authority-data": base64.b64encode(self.cert.read_bytes()).decode()}
        dest.write_text(yaml.safe_dump(cfg))
        return dest
