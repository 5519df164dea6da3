"""A private Mosquitto with a TLS listener and a CA made for the test (issue #14 part 2).

``make_pki(dir)`` writes, with the ``cryptography`` package, PEM files for:
- ``ca.pem``: the school's CA, the one a board trusts (its device file names it);
- ``good``: a server certificate from that CA for ``127.0.0.1`` and ``localhost`` (IP and DNS SANs);
- ``expired``: the same names, from the same CA, valid only until yesterday;
- ``wronghost``: from the same CA, valid, but for ``broker.other-school.example`` only;
- ``other_ca.pem``: a second, unrelated CA (a board given it must refuse the real broker).

``tls_mosquitto(dir, cert)`` starts Mosquitto with a TLS listener serving server certificate
``cert`` (one of the three names above) and a plain listener for the test's own cloud-side client,
both on free ports of 127.0.0.1; it yields ``(tls_port, plain_port)`` and stops the broker after.
Keys are ECDSA P-256 (what the board's mbedTLS verifies with the least heap, docs/decisions.md
D25-K).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.dynsec_broker import free_port, wait_listening

SERVER_CERTS = ("good", "expired", "wronghost")
OTHER_HOST = "broker.other-school.example"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
    return k.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ca(cn: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    k = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(k, hashes.SHA256())
    )
    return k, cert


def _server(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    cn: str,
    sans: list[x509.GeneralName],
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    k = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject)
        .public_key(k.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return k, cert


def make_pki(d: Path) -> Path:
    """Write the CAs and server certificates into ``d`` (see the module doc); return ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, ca = _ca("qadam test school CA", now)
    _, other = _ca("an unrelated CA", now)
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "other_ca.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    local = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    year = dt.timedelta(days=365)
    servers = {
        "good": ("127.0.0.1", local, now - dt.timedelta(days=1), now + year),
        "expired": ("127.0.0.1", local, now - year, now - dt.timedelta(days=1)),
        "wronghost": (
            OTHER_HOST,
            [x509.DNSName(OTHER_HOST)],
            now - dt.timedelta(days=1),
            now + year,
        ),
    }
    for name, (cn, sans, nb, na) in servers.items():
        k, c = _server(ca_key, ca, cn, sans, nb, na)
        (d / f"{name}.key").write_bytes(_pem_key(k))
        (d / f"{name}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))
    return d


@contextmanager
def tls_mosquitto(
    d: Path, cert: str = "good", ports: tuple[int, int] | None = None
) -> Iterator[tuple[int, int]]:
    """Mosquitto in ``d`` (PKI from make_pki(d) if missing; log ``d/mosquitto-<cert>.log``)
    serving server certificate ``cert``; yields ``(tls_port, plain_port)`` (free ports, or
    ``ports``: a broker started again where a board already looks for it)."""
    assert cert in SERVER_CERTS, cert
    if not (d / "ca.pem").exists():
        make_pki(d)
    tls_port, plain_port = ports or (free_port(), free_port())
    conf = d / f"mosquitto-{cert}.conf"
    conf.write_text(
        f"per_listener_settings false\nallow_anonymous true\nuser root\n"
        f"log_dest file {d}/mosquitto-{cert}.log\nconnection_messages true\n"
        f"listener {plain_port} 127.0.0.1\n"
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {d}/ca.pem\ncertfile {d}/{cert}.pem\nkeyfile {d}/{cert}.key\n"
        "tls_version tlsv1.2\n"
    )
    proc = subprocess.Popen(
        ["/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(proc, tls_port)
        wait_listening(proc, plain_port)
        yield tls_port, plain_port
    finally:
        proc.terminate()
        proc.wait(10)
