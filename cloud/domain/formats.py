"""One rule per value people type: claim tokens and card UIDs (issue #13 item 16).

Plain functions and compiled patterns, no FastAPI or database import, so that tools/ (the
technician's ``qadam flash``), the API models and the importer share the same rule and the
same one-line message. Each ``check_*`` returns the normalised value or raises ``ValueError``.
"""

from __future__ import annotations

import re

CLAIM_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"
CLAIM_TOKEN_RE = re.compile(CLAIM_TOKEN_PATTERN)
CLAIM_TOKEN_RULE = "a claim token is 16-128 characters of letters, digits, '_' and '-'"

# ISO/IEC 14443-3 type A: a UID is single (4 bytes), double (7) or triple (10) size.
CARD_UID_BYTES = (4, 7, 10)
CARD_UID_SEPARATORS = ":-"  # "04:A2:..." and "04-A2-..." as readers and lists print them
CARD_UID_RULE = "a card UID is 4, 7 or 10 bytes of hex (8, 14 or 20 hex digits)"
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
        raise ValueError(f"{_show(text)} is not a card UID: {CARD_UID_RULE}")
    digits = text.strip()
    for sep in CARD_UID_SEPARATORS:
        digits = digits.replace(sep, "")
    if len(digits) not in tuple(2 * n for n in CARD_UID_BYTES) or not _HEX_RE.fullmatch(digits):
        raise ValueError(f"{_show(text)} is not a card UID: {CARD_UID_RULE}")
    return digits.upper()


def check_card_uid(text: str) -> bytes:
    """The UID bytes of ``text`` (hex, ':' or '-' between digits allowed), else ``ValueError``."""
    return bytes.fromhex(card_uid_hex(text))
