"""The keys of alternative identification, as the board derives them (firmware/store/altkey.py,
docs/altid.md): a person key per pupil, a QR key per person and a tag per 30 s step, a PIN key.
Written again here with the standard library (``hmac``); tests hold both to one vector."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

STEP_S = 30
PIN_RE = re.compile(r"[0-9]{4,8}")
QR_PREFIX = "Q1"


def _number(person_id: int) -> bytes:
    if not isinstance(person_id, int) or person_id < 1:
        raise ValueError("person id must be a positive integer")
    return str(person_id).encode()


def person_key(site_key: bytes, person_id: int) -> bytes:
    """8 bytes: SHA-256(site_key || "qadam-altid-person:" || pupil number)[0:8]."""
    return hashlib.sha256(bytes(site_key) + b"qadam-altid-person:" + _number(person_id)).digest()[
        :8
    ]


def pin_key(site_key: bytes, person_id: int, pin: str) -> bytes:
    """8 bytes: SHA-256(site_key || "qadam-altid-pin:" || person key || PIN)[0:8]."""
    if not isinstance(pin, str) or not PIN_RE.fullmatch(pin):
        raise ValueError("a PIN is 4 to 8 digits")
    pk = person_key(site_key, person_id)
    return hashlib.sha256(bytes(site_key) + b"qadam-altid-pin:" + pk + pin.encode()).digest()[:8]


def qr_key(site_key: bytes, person_id: int) -> bytes:
    """32 bytes: HMAC-SHA256(site_key, "qadam-altid-qr:" || person key)."""
    pk = person_key(site_key, person_id)
    return hmac.new(bytes(site_key), b"qadam-altid-qr:" + pk, hashlib.sha256).digest()


def qr_tag(site_key: bytes, person_id: int, step: int) -> bytes:
    """8 bytes: HMAC-SHA256(QR key, "QR" || person key || step as u32 big-endian)[0:8]."""
    if not 0 <= step <= 0xFFFFFFFF:
        raise ValueError("step out of range")
    pk = person_key(site_key, person_id)
    msg = b"QR" + pk + step.to_bytes(4, "big")
    return hmac.new(qr_key(site_key, person_id), msg, hashlib.sha256).digest()[:8]


def qr_text(site_key: bytes, person_id: int, now: float | None = None) -> tuple[str, int]:
    """The code to show now and the Unix time its step ends (the app shows the next one then)."""
    t = int(time.time() if now is None else now)
    step = t // STEP_S
    tag = qr_tag(site_key, person_id, step).hex()
    return f"{QR_PREFIX}.{person_id}.{step}.{tag}", (step + 1) * STEP_S
