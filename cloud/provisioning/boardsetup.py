"""What only the cloud knows about a board's setting-up, given in the provisioning answer
(docs/provisioning.md, D27-C): whether boards reach the broker over TLS and which CA they trust,
the NTP servers, and the school's offset from UTC in minutes.

Checked at start-up (cloud/settings.py): a TLS cloud without a CA file, or with one that holds no
certificate, does not start, so a board is never provisioned with a CA it cannot use.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Kazakhstan's own NTP pool zone first, then the continent's and the world's: a board asks them
# in order until one answers (firmware/net/ntp.py). Names, so that the pool can move its servers;
# a school whose network blocks DNS sets IP addresses instead (QADAM_DEVICE_NTP_SERVERS).
DEFAULT_NTP_SERVERS = ("kz.pool.ntp.org", "asia.pool.ntp.org", "pool.ntp.org")
MAX_NTP_SERVERS = 8
# host or host:port, as firmware/net/ntp.py splits it (an IPv4 address is a host too)
_NTP_SERVER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?")
# the board's `tz_offset_min` range (firmware/app/canteen_cfg.py): UTC-12 .. UTC+14
TZ_OFFSET_MIN, TZ_OFFSET_MAX = -720, 840

_BEGIN = "-----BEGIN CERTIFICATE-----"


def load_ca_pem(path: str) -> str:
    """The CA certificate(s) boards must trust, from PEM file ``path``, as text. ValueError with
    the reason when the file cannot be read or holds no certificate that parses."""
    from cryptography import x509

    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ValueError(f"cannot read it ({exc.strerror or exc})") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("not a PEM file (binary content; convert DER with openssl x509)") from None
    if _BEGIN not in text:
        raise ValueError(f"no {_BEGIN} block in it")
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError:
        raise ValueError("a certificate in it does not parse") from None
    for c in certs:
        try:
            ca = c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = True  # an old self-signed root without the extension
        if not ca:
            raise ValueError(
                f"{c.subject.rfc4514_string()} is not a CA certificate (give the CA that signed "
                "the broker's certificate, not the broker's own)"
            )
    return text.strip() + "\n"


def check_ntp_servers(servers: tuple[str, ...]) -> None:
    """ValueError naming the first bad entry of a server list."""
    if not 1 <= len(servers) <= MAX_NTP_SERVERS:
        raise ValueError(f"give 1 to {MAX_NTP_SERVERS} servers, not {len(servers)}")
    for s in servers:
        m = _NTP_SERVER.fullmatch(s)
        port = s.partition(":")[2]
        if not m or (port and not 0 < int(port) < 65536):
            raise ValueError(f"{s!r} is not HOST or HOST:PORT")


def tz_offset_min(zone: str, at: datetime | None = None) -> int:
    """The school's offset from UTC in minutes at ``at`` (default now), from its IANA time zone.
    Kazakhstan keeps no summer time, so the offset a board is given lasts; it changes only when
    the law does (Asia/Almaty went from UTC+6 to UTC+5 on 2024-03-01) and the board is
    provisioned or configured again. ValueError for an unknown zone or an offset out of range."""
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}") from None
    off = (at or datetime.now(UTC)).astimezone(tz).utcoffset()
    assert off is not None
    minutes = int(off.total_seconds()) // 60
    if not TZ_OFFSET_MIN <= minutes <= TZ_OFFSET_MAX:
        raise ValueError(f"time zone {zone!r} is UTC{minutes:+d} min, out of the board's range")
    return minutes
