"""A self-signed certificate for ketch's port when none is given (``--tls-cert``/``--tls-key``).

Made once under ``KETCH_HOME/tls`` (key 0600) and reused; kubeconfigs carry it as their
``certificate-authority`` (it is its own CA), and its SHA-256 fingerprint is printed when ketch is exposed
beyond loopback so a user on another machine can check what they connect to.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
from pathlib import Path

from ketch.kubelet.network import BRIDGE, GATEWAY
from ketch.machinery.authn import private_file


def machine_ips() -> list[str]:
    """This machine's non-loopback IPv4 addresses as other machines would dial them: the one its default
    route leaves from (what Ray names a node by), those its host name resolves to, and those of its other
    interfaces (a machine on several networks, a Ray cluster on a private one, is dialled on each)."""
    found: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: connect() on UDP only picks the route
        found.append(s.getsockname()[0])
    with contextlib.suppress(OSError):
        found += socket.gethostbyname_ex(socket.gethostname())[2]
    with contextlib.suppress(Exception):
        import psutil

        found += [a.address for name, addrs in psutil.net_if_addrs().items() if name != BRIDGE  # ketch's own Pod network: not dialled
                  for a in addrs if a.family == socket.AF_INET]
    return [ip for ip in dict.fromkeys(found) if not ipaddress.ip_address(ip).is_loopback and not ipaddress.ip_address(ip).is_unspecified]


def _wanted_ips(host: str) -> list[str]:
    """The IPs the certificate must name beyond loopback and the gateway: the address ketch listens on, or
    every address of this machine when it listens on all of them (Pods on other machines are told one)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return []
    if ip.is_unspecified:
        return machine_ips()
    return [] if ip.is_loopback else [str(ip)]


def self_signed(home: Path, host: str) -> tuple[Path, Path]:
    d = home / "tls"
    cert_p, key_p = d / "tls.crt", d / "tls.key"
    extra = _wanted_ips(host)
    if cert_p.exists() and key_p.exists() and _names_ips(cert_p, [GATEWAY, *extra]):
        return cert_p, key_p
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     x509.IPAddress(ipaddress.ip_address("::1")),
                                     # where Pods with a network namespace of their own reach ketch (kubelet/network.py)
                                     x509.IPAddress(ipaddress.ip_address(GATEWAY))]
    for n in {socket.gethostname(), socket.getfqdn()}:
        if n and n != "localhost":
            names.append(x509.DNSName(n))
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra]
    if host and not _is_ip(host):
        names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ketch")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    private_file(key_p, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()).decode())
    cert_p.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_p, key_p


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _names_ips(cert_path: Path, want: list[str]) -> bool:
    """Whether a certificate made here already names every address in ``want`` (the Pod network's gateway,
    the addresses ketch is reached at); one made before it did, or for another address, is made anew."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        ips = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)
    except (ValueError, x509.ExtensionNotFound):
        return False
    return all(ipaddress.ip_address(w) in ips for w in want)


def fingerprint(cert_path: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
