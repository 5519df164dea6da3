# net/tlsctx.py (protocol.md "TLS", D25-K): the CA file a board trusts, PEM decoded by the
# firmware (the unix port's mbedTLS parses DER only), and which connect failures are TLS
# refusals. Runs under CPython (its ssl) and in the MicroPython VM (its tls, mbedTLS).
import binascii
import os

from net import tlsctx

# Two self-signed ECDSA P-256 CA certificates made for this case (tests/tls_broker.py's _ca).
CA_A = (
    b"-----BEGIN CERTIFICATE-----\n"
    b"MIIBXzCCAQSgAwIBAgIUR7ecN+hq7/TiZBT6gxyuWopbYJowCgYIKoZIzj0EAwIw\n"
    b"GzEZMBcGA1UEAwwQdGxzY3R4IGNhc2UgQ0EgQTAeFw0yNTEyMzEwMDAwMDBaFw0z\n"
    b"NTEyMzAwMDAwMDBaMBsxGTAXBgNVBAMMEHRsc2N0eCBjYXNlIENBIEEwWTATBgcq\n"
    b"hkjOPQIBBggqhkjOPQMBBwNCAARkmt0+voE8e7NiIC045rw1OjIfF4utlUKE77P4\n"
    b"Brgm1CRggsM3rVNN13XZBcRFvRNGOiEw2syIzha2czyr7kAYoyYwJDASBgNVHRMB\n"
    b"Af8ECDAGAQH/AgEAMA4GA1UdDwEB/wQEAwIBhjAKBggqhkjOPQQDAgNJADBGAiEA\n"
    b"1HSDaArdRrKOZ0Y9QjFtJE/SCTzkSaNVapHiGsG+cXcCIQCrF3w8ldlm2AvMBndo\n"
    b"/ALGQJTr4WO6SYW8pAjQ6f4ZLw==\n"
    b"-----END CERTIFICATE-----\n"
)
CA_B = (
    b"-----BEGIN CERTIFICATE-----\n"
    b"MIIBXzCCAQSgAwIBAgIUDb2ew5DFaLRPR+UQUBCStFVfULkwCgYIKoZIzj0EAwIw\n"
    b"GzEZMBcGA1UEAwwQdGxzY3R4IGNhc2UgQ0EgQjAeFw0yNTEyMzEwMDAwMDBaFw0z\n"
    b"NTEyMzAwMDAwMDBaMBsxGTAXBgNVBAMMEHRsc2N0eCBjYXNlIENBIEIwWTATBgcq\n"
    b"hkjOPQIBBggqhkjOPQMBBwNCAAT4E08Uv3MU+osPMPvFW2ZSQAB6NKQX4vhDqmEJ\n"
    b"x3QfaoRrByJiqg2RUNh2lYquA9oLdTJszhC2FKAvAmWbxW7ooyYwJDASBgNVHRMB\n"
    b"Af8ECDAGAQH/AgEAMA4GA1UdDwEB/wQEAwIBhjAKBggqhkjOPQQDAgNJADBGAiEA\n"
    b"rev7evk7Hb7eC3tsPnTqPpq5Ub/qvP9pYiGP+wDERkACIQC761XLcyIjTuYXjOno\n"
    b"goEDaJbu6nPxID0n5/3/f/Wwrg==\n"
    b"-----END CERTIFICATE-----\n"
)
NAME = "tlsctx_case_ca.pem"


def _with_file(data, fn):
    with open(NAME, "wb") as f:
        f.write(data)
    try:
        return fn()
    finally:
        os.remove(NAME)


def _raises(fn):
    try:
        fn()
    except ValueError as e:
        return str(e)
    raise AssertionError("no ValueError")


def test_pem_one_or_more_certificates_and_crlf():
    for data in (CA_A, CA_A + CA_B, (CA_B + CA_A).replace(b"\n", b"\r\n")):
        ctx = _with_file(data, lambda: tlsctx.context(NAME))
        assert ctx.verify_mode == tlsctx.tls.CERT_REQUIRED


def test_der():
    der = binascii.a2b_base64(b"".join(CA_A.split(b"\n")[1:-2]))
    assert der[0] == 0x30  # an ASN.1 SEQUENCE: DER
    ctx = _with_file(der, lambda: tlsctx.context(NAME))
    assert ctx.verify_mode == tlsctx.tls.CERT_REQUIRED


def test_missing_empty_and_bad_files_are_named():
    assert _raises(lambda: tlsctx.context("no-such-ca.pem")) == "no CA file no-such-ca.pem"
    empty = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
    assert (
        _raises(lambda: _with_file(empty, lambda: tlsctx.context(NAME)))
        == "no certificate in " + NAME
    )
    bad = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    assert _raises(lambda: _with_file(bad, lambda: tlsctx.context(NAME))) == "bad CA file " + NAME


def test_reason_tells_tls_refusals_from_link_failures():
    r = tlsctx.reason
    assert (
        r(ValueError("\nThe certificate validity has expired\n"))
        == "The certificate validity has expired"
    )
    assert (
        r(OSError(-30592, "SSL - A fatal alert message was received from our peer"))
        == "SSL - A fatal alert message was received from our peer"
    )
    assert r(OSError(-9984)) == "-9984"
    assert r(OSError(113)) is None  # EHOSTUNREACH: the link, not TLS
    assert r(OSError(111, "ECONNREFUSED")) is None
    assert r(EOFError()) is None
    assert r(KeyError("x")) is None
