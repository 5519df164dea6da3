"""One rule per value people type: claim tokens and card UIDs (issue #13 item 16).

Plain functions and compiled patterns, no FastAPI or database import, so that tools/ (the
technician's ``qadam flash``), the API models and the importer share the same rule and the
same one-line message. Each ``check_*`` returns the normalised value or raises ``ValueError``.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

CLAIM_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"
CLAIM_TOKEN_RE = re.compile(CLAIM_TOKEN_PATTERN)
CLAIM_TOKEN_RULE = "a claim token is 16-128 characters of letters, digits, '_' and '-'"

# ISO/IEC 14443-3 type A: a UID is single (4 bytes), double (7) or triple (10) size.
CARD_UID_BYTES = (4, 7, 10)
CARD_UID_SEPARATORS = ":-"  # "04:A2:..." and "04-A2-..." as readers and lists print them
CARD_UID_RULE = "4, 7 or 10 bytes of hex (8, 14 or 20 hex digits)"
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_claim_token(token: str) -> str:
    """``token`` unchanged if it has the claim-token format, else ``ValueError`` (one line)."""
    # The token is a secret: the message says what is wrong without echoing it.
    if not isinstance(token, str):
        raise ValueError(f"not a claim token: {CLAIM_TOKEN_RULE}")
    if CLAIM_TOKEN_RE.fullmatch(token) is None:
        raise ValueError(f"not a claim token ({len(token)} characters): {CLAIM_TOKEN_RULE}")
    return token


def card_uid_hex(text: str) -> str:
    """``text`` as upper-case hex without separators if it is a card UID, else ``ValueError``."""
    if not isinstance(text, str):
        raise ValueError(f"card UID {_show(text)} is not {CARD_UID_RULE}")
    digits = text.strip()
    for sep in CARD_UID_SEPARATORS:
        digits = digits.replace(sep, "")
    if len(digits) not in tuple(2 * n for n in CARD_UID_BYTES) or not _HEX_RE.fullmatch(digits):
        raise ValueError(f"card UID {_show(text)} is not {CARD_UID_RULE}")
    return digits.upper()


def check_card_uid(text: str) -> bytes:
    """The UID bytes of ``text`` (hex, ':' or '-' between digits allowed), else ``ValueError``."""
    return bytes.fromhex(card_uid_hex(text))


# URLs people give (a dish's photo): shown to browsers, so only https or a file we host.
URL_MAX = 2000
MEDIA_PREFIX = "/media/"
URL_RULE = "a URL must be https://host/... or a path we host starting with /media/"
_MEDIA_PATH_RE = re.compile(r"/media/[A-Za-z0-9._~/-]+")
_HOST_RE = re.compile(r"[A-Za-z0-9.-]+|[0-9A-Fa-f:.]+")
_URL_UNSAFE_RE = re.compile(r"[\x00-\x20\x7f\\\"'<>`]")


def check_public_url(url: str) -> str:
    """``url`` unchanged if it is an https URL with a host (no user:password@) or a /media/
    path, else ``ValueError`` naming the rule. ``javascript:``, ``data:``, ``http:`` and
    scheme-relative ``//host`` are all refused."""
    if not isinstance(url, str) or not url:
        raise ValueError(URL_RULE)
    if len(url) > URL_MAX:
        raise ValueError(f"a URL is at most {URL_MAX} characters")
    if _URL_UNSAFE_RE.search(url):
        raise ValueError(f"{URL_RULE}; spaces, quotes, '<', '>' and '\\' must be %-encoded")
    if url.startswith(MEDIA_PREFIX):
        if _MEDIA_PATH_RE.fullmatch(url) is None or ".." in url.split("/") or "//" in url:
            raise ValueError(
                f"{_show(url)}: {URL_RULE} (a /media/ path is letters, digits, . _ ~ - /)"
            )
        return url
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number in 0-65535 raises here
    except ValueError:
        raise ValueError(f"{_show(url)} is not a URL: {URL_RULE}") from None
    if parts.scheme.lower() != "https":
        raise ValueError(f"{_show(url)}: {URL_RULE}")
    host = parts.hostname or ""
    if "@" in parts.netloc:
        raise ValueError(f"{_show(url)}: a URL must not carry a user name or password")
    if not host or _HOST_RE.fullmatch(host) is None:
        raise ValueError(f"{_show(url)}: {URL_RULE} (the host is missing or not a host name)")
    return url


# School settings the reports depend on (cloud/reports/build.py: lateness after day_start in
# the school's time zone).
TIME_ZONE_RULE = "an IANA time zone name such as Asia/Almaty or Asia/Aqtobe"
DAY_TIME_RULE = "a time of day as HH:MM (24-hour clock, 00:00-23:59)"
_HHMM_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


@functools.cache
def _time_zones() -> frozenset[str]:
    import zoneinfo  # reads the system's (or the tzdata package's) database once: ~0.25 s

    # files of the database that are no place's zone (and "localtime" is this machine's)
    return frozenset(zoneinfo.available_timezones()) - {"localtime", "Factory", "posixrules"}


def check_time_zone(name: str) -> str:
    """``name`` if the time-zone database knows it (``zoneinfo``), else ``ValueError``."""
    if not isinstance(name, str) or name not in _time_zones():
        raise ValueError(f"unknown time zone {_show(name)}: {TIME_ZONE_RULE}")
    return name


def check_day_time(text: str) -> str:
    """``text`` if it is HH:MM, else ``ValueError``."""
    if not isinstance(text, str) or _HHMM_RE.fullmatch(text) is None:
        raise ValueError(f"{_show(text)} is not {DAY_TIME_RULE}")
    return text
