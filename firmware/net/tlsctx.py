# TLS to the broker (protocol.md "TLS"): the context that verifies the broker's certificate
# against the CA in the board's flash, and the reason a refused handshake goes into the status.
# Imported only by a board whose device file says mqtt.tls (net/link.py): a plain board pays
# nothing for it.
import binascii

try:
    import tls

    _CPY = False
except ImportError:  # CPython (unit tests): its ssl has the same names
    import ssl as tls

    _CPY = True


def context(ca):
    """A client context requiring a certificate signed by the CA in file `ca` (PEM or DER; a
    PEM file may hold several). Raises ValueError naming the file if it is missing or holds no
    certificate the TLS stack parses: the board then never connects rather than connect
    unverified."""
    try:
        with open(ca, "rb") as f:
            data = f.read()
    except OSError:
        raise ValueError("no CA file " + ca) from None
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    if data[:5] == b"-----":
        # PEM: MicroPython's mbedTLS builds may parse DER only (the unix port does), so the
        # base64 between the armour lines is decoded here, one certificate per block.
        ders = []
        cur = None
        for line in data.split(b"\n"):
            line = line.strip()
            if line.startswith(b"-----BEGIN"):
                cur = []
            elif line.startswith(b"-----END"):
                if cur:
                    ders.append(binascii.a2b_base64(b"".join(cur)))
                cur = None
            elif cur is not None and line:
                cur.append(line)
    else:
        ders = [data]
    if not ders:
        raise ValueError("no certificate in " + ca)
    try:
        for der in ders:
            if _CPY:
                ctx.load_verify_locations(cadata=der)
            else:
                ctx.load_verify_locations(der)
    except (ValueError, OSError):  # MicroPython: ValueError; CPython: ssl.SSLError
        raise ValueError("bad CA file " + ca) from None
    return ctx


def reason(e):
    """What a failed connect says about TLS: mbedTLS's verify reason (ValueError: "The
    certificate validity has expired", "... is not correctly signed by the trusted CA", "...
    Common Name (CN) does not match ..."), or its error (an OSError with a negative code); None
    for anything else (TCP, DNS, MQTT: the "link" errors)."""
    a = e.args
    if isinstance(e, ValueError) or (isinstance(e, OSError) and a and isinstance(a[0], int)
                                     and a[0] < 0):
        return str(a[-1]).strip() if a else type(e).__name__
    return None
