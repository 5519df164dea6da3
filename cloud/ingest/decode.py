"""Pure decoder of event batches (docs/protocol.md, "Event batch").

``decode(topic, payload)`` returns a :class:`Batch` or a :class:`Reject`; it never raises.
Everything a :class:`Batch` holds can be stored in PostgreSQL as is (no NUL characters, no lone
surrogates, integers within ``bigint``, times within ``timestamptz``), so a well-formed but hostile
payload cannot make the writer fail and stall the ingest on retries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

MAX_PAYLOAD = 16 * 1024
MAX_EVENTS = 32
# A payload this big is not parsed at all, not even to find the range to ack.
MAX_PARSE_FOR_RANGE = 1024 * 1024
INT8_MAX = 2**63 - 1
T_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second Python's datetime can hold
MAX_STR = 64

DEVICE_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
CARD_RE = re.compile(r"[0-9a-f]{16}")
READERS = frozenset({"in", "out", "canteen"})
RESULTS = frozenset({"granted", "denied"})
METHODS = frozenset({"qr", "pin"})

# Reject reasons (stored in quarantine.reason).
BAD_TOPIC = "bad_topic"
TOO_LARGE = "too_large"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
BAD_VERSION = "bad_version"
DEV_MISMATCH = "dev_mismatch"
BAD_BOOT = "bad_boot"
BAD_EVENTS = "bad_events"
BAD_EVENT = "bad_event"
BOOT_MISMATCH = "boot_mismatch"
SEQ_ORDER = "seq_order"
INTERNAL = "internal_error"
UNKNOWN_DEVICE = "unknown_device"  # set by the writer (D4), not by the decoder
# set by the writer: an identity (device, boot, seq) already stored with other content (a
# re-flashed board restarted its boot counter; issue #13 item 7, docs/ingest.md)
IDENTITY_REUSED = "identity_reused"

REASONS = frozenset(
    {
        BAD_TOPIC,
        TOO_LARGE,
        NOT_UTF8,
        NOT_JSON,
        NOT_OBJECT,
        BAD_VERSION,
        DEV_MISMATCH,
        BAD_BOOT,
        BAD_EVENTS,
        BAD_EVENT,
        BOOT_MISMATCH,
        SEQ_ORDER,
        INTERNAL,
    }
)


_Int8 = Annotated[int, Meta(ge=0, le=INT8_MAX)]
# non-empty, at most MAX_STR characters (msgspec's JSON decoder refuses lone surrogates). No NUL
# either, but that is checked once per payload (_decode_fast), not by a pattern per string: the
# two patterns per event (this and the card's) were two thirds of the decoder's time.
_Text = Annotated[str, Meta(min_length=1, max_length=MAX_STR)]
_HEX_DIGITS = b"0123456789abcdef"


class Event(msgspec.Struct, frozen=True, gc=False):
    """One event of a batch. The annotations are the wire format's rules: msgspec checks them
    in C while it parses (the fast path of :func:`decode`); ``_event_checked`` checks the same in
    Python to name the problem of a payload the fast path refused (a fuzz test holds both to the
    same result)."""

    boot: _Int8
    seq: Annotated[int, Meta(ge=1, le=INT8_MAX)]
    t: Annotated[int, Meta(ge=0, le=T_MAX)]
    sync: Literal[0, 1]  # 1: the board's clock was synced (protocol.md)
    up: _Int8
    kind: _Text
    reader: Literal["in", "out", "canteen"]
    card: Annotated[str, Meta(min_length=16, max_length=16)]  # + lowercase hex: _decode_fast
    result: Literal["granted", "denied"]
    reason: _Text
    # canteen taps: the cloud's dish id from the pushed menu (protocol.md "Canteen"); an
    # optional key, so a missing or malformed one is None rather than a rejected batch (a
    # malformed one makes the fast path give way to the checked one, which reads it as None)
    dish: Annotated[int, Meta(ge=1, le=INT8_MAX)] | None = None
    # "not_passed" events: the seq of the granted tap nobody walked through (same boot;
    # protocol.md "Event reasons"); optional like ``dish``, and None when malformed
    ref: Annotated[int, Meta(ge=1, le=INT8_MAX)] | None = None
    # how the person was identified when not by a card (protocol.md "Alternative
    # identification", D29-J): "qr" or "pin"; absent (old boards, every card tap) is None,
    # an unknown or malformed one is None too, as with ``dish``
    method: Literal["qr", "pin"] | None = None


class _WireBatch(msgspec.Struct, gc=False):
    v: Literal[1]
    dev: str
    boot: _Int8
    events: Annotated[list[Event], Meta(min_length=1, max_length=MAX_EVENTS)]


_WIRE = msgspec.json.Decoder(_WireBatch)


@dataclass(frozen=True, slots=True)
class Batch:
    device: str
    boot: int
    events: tuple[Event, ...]
    topic: str = ""
    payload: bytes = b""

    @property
    def first(self) -> int:
        return self.events[0].seq

    @property
    def last(self) -> int:
        return self.events[-1].seq


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str
    device: str | None = None
    boot: int | None = None
    first: int | None = None
    last: int | None = None
    detail: str = ""
    topic: str = ""
    payload: bytes = field(default=b"", repr=False)

    @property
    def ackable(self) -> bool:
        return (
            self.device is not None
            and self.boot is not None
            and self.first is not None
            and self.last is not None
        )


Decoded = Batch | Reject


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def device_from_topic(topic: str) -> str | None:
    """The ``{device}`` of ``{prefix}/v1/dev/{device}/events``, or None if the topic is not one."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[-4:-2] != ["v1", "dev"] or parts[-1] != "events":
        return None
    if not all(parts[:-4]):
        return None
    dev = parts[-2]
    return dev if DEVICE_RE.fullmatch(dev) else None


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def _is_str(v: Any, max_len: int = MAX_STR) -> bool:
    if type(v) is not str or not v or len(v) > max_len or "\x00" in v:
        return False
    try:
        v.encode("utf-8")  # lone surrogates from "\ud800" escapes cannot be stored
    except UnicodeEncodeError:
        return False
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _event_checked(raw: Any, index: int, boot: int) -> Event:
    where = f"events[{index}]"
    if type(raw) is not dict:
        raise _Invalid(BAD_EVENT, f"{where} is not an object")
    checks: tuple[tuple[str, bool], ...] = (
        ("boot", _is_int(raw.get("boot"), 0, INT8_MAX)),
        ("seq", _is_int(raw.get("seq"), 1, INT8_MAX)),
        ("t", _is_int(raw.get("t"), 0, T_MAX)),
        ("sync", _is_int(raw.get("sync"), 0, 1)),
        ("up", _is_int(raw.get("up"), 0, INT8_MAX)),
        ("kind", _is_str(raw.get("kind"))),
        ("reader", type(raw.get("reader")) is str and raw["reader"] in READERS),
        ("card", type(raw.get("card")) is str and bool(CARD_RE.fullmatch(raw["card"]))),
        ("result", type(raw.get("result")) is str and raw["result"] in RESULTS),
        ("reason", _is_str(raw.get("reason"))),
    )
    for key, ok in checks:
        if not ok:
            what = "missing" if key not in raw else "invalid"
            raise _Invalid(BAD_EVENT, f"{where}.{key} {what}")
    if raw["boot"] != boot:
        raise _Invalid(BOOT_MISMATCH, f"{where}.boot {raw['boot']} != batch boot {boot}")
    return Event(
        boot=raw["boot"],
        seq=raw["seq"],
        t=raw["t"],
        sync=raw["sync"],
        up=raw["up"],
        kind=raw["kind"],
        reader=raw["reader"],
        card=raw["card"],
        result=raw["result"],
        reason=raw["reason"],
        dish=raw["dish"] if _is_int(raw.get("dish"), 1, INT8_MAX) else None,
        ref=raw["ref"] if _is_int(raw.get("ref"), 1, INT8_MAX) else None,
        method=raw["method"] if raw.get("method") in METHODS else None,
    )


def _decode(topic: str, payload: bytes, device: str) -> Batch:
    if len(payload) > MAX_PAYLOAD:
        raise _Invalid(TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD}")
    return _decode_fast(topic, payload, device) or _decode_checked(topic, payload, device)


def _decode_fast(topic: str, payload: bytes, device: str) -> Batch | None:
    """A well-formed batch, parsed and checked by msgspec (a replay decodes tens of thousands
    of events per second); None for anything else, which :func:`_decode_checked` then decides."""
    # A NUL can only be in a string as the escape \u0000 (JSON has no raw control characters);
    # a payload with those six bytes anywhere (even the harmless text "\\u0000") is left to the
    # checked path, which names what is wrong with it, if anything.
    if b"\\u0000" in payload:
        return None
    try:
        payload.decode("utf-8")  # msgspec does not check the bytes of keys it skips
        wire = _WIRE.decode(payload)
    except Exception:  # malformed, invalid, bad UTF-8 inside a string...: the checked path says
        return None
    if wire.dev != device:
        return None
    boot, prev = wire.boot, 0
    for e in wire.events:
        if e.boot != boot or e.seq <= prev:
            return None
        prev = e.seq
    # every card is 16 characters (the annotation); all of them lowercase hex: deleting the hex
    # digits leaves nothing (bytes.translate, a table lookup per byte: ~7x faster than str.strip
    # with a set of characters; any other character becomes bytes it does not delete)
    cards = "".join([e.card for e in wire.events]).encode("utf-8", "replace")
    if cards.translate(None, _HEX_DIGITS):
        return None
    return Batch(device=device, boot=boot, events=tuple(wire.events), topic=topic, payload=payload)


def _decode_checked(topic: str, payload: bytes, device: str) -> Batch:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Invalid(NOT_UTF8, f"invalid UTF-8 at byte {e.start}") from None
    try:
        doc = _loads(text)
    except (ValueError, RecursionError) as e:
        raise _Invalid(NOT_JSON, str(e)[:200]) from None
    if type(doc) is not dict:
        raise _Invalid(NOT_OBJECT, f"top level is {type(doc).__name__}")
    if "v" not in doc or type(doc["v"]) is not int or doc["v"] != 1:
        raise _Invalid(BAD_VERSION, f"v={doc.get('v')!r:.40}")
    if doc.get("dev") != device:
        raise _Invalid(DEV_MISMATCH, f"dev={doc.get('dev')!r:.40} topic device={device}")
    raw_boot = doc.get("boot")
    if not isinstance(raw_boot, int) or not _is_int(raw_boot, 0, INT8_MAX):
        raise _Invalid(BAD_BOOT, f"boot={raw_boot!r:.40}")
    boot = raw_boot
    raw_events = doc.get("events")
    if type(raw_events) is not list:
        raise _Invalid(BAD_EVENTS, "events is not a list")
    if not 1 <= len(raw_events) <= MAX_EVENTS:
        raise _Invalid(BAD_EVENTS, f"{len(raw_events)} events, want 1..{MAX_EVENTS}")
    events = tuple(_event_checked(raw, i, boot) for i, raw in enumerate(raw_events))
    for prev, cur in zip(events, events[1:], strict=False):
        if cur.seq <= prev.seq:
            raise _Invalid(SEQ_ORDER, f"seq {cur.seq} after {prev.seq}")
    return Batch(device=device, boot=boot, events=events, topic=topic, payload=payload)


def _range(payload: bytes) -> tuple[int | None, int | None, int | None]:
    """Best effort: the batch's boot and its min/max seq, to ack a rejected batch so the board's
    journal drains (protocol.md, Quarantine)."""
    try:
        if len(payload) > MAX_PARSE_FOR_RANGE:
            return None, None, None
        doc = _loads(payload.decode("utf-8"))
        if type(doc) is not dict:
            return None, None, None
        boot = doc.get("boot")
        if not _is_int(boot, 0, INT8_MAX):
            return None, None, None
        evs = doc.get("events")
        if type(evs) is not list:
            return boot, None, None
        seqs = [e["seq"] for e in evs if type(e) is dict and _is_int(e.get("seq"), 1, INT8_MAX)]
        if not seqs:
            return boot, None, None
        return boot, min(seqs), max(seqs)
    except Exception:
        return None, None, None


def decode(topic: str, payload: bytes | bytearray | memoryview) -> Decoded:
    """Decode one MQTT message from ``{prefix}/v1/dev/{device}/events``. Never raises."""
    raw = payload
    try:
        payload = bytes(raw)
        device = device_from_topic(topic) if isinstance(topic, str) else None
        if device is None:
            return Reject(
                BAD_TOPIC, detail=f"topic {topic!r:.120}", topic=str(topic), payload=payload
            )
        try:
            return _decode(topic, payload, device)
        except _Invalid as e:
            boot, first, last = _range(payload)
            return Reject(
                e.reason,
                device=device,
                boot=boot,
                first=first,
                last=last,
                detail=e.detail,
                topic=topic,
                payload=payload,
            )
    except Exception as e:  # pragma: no cover - defensive: the decoder must never raise
        try:
            return Reject(INTERNAL, detail=repr(e)[:200], topic=str(topic), payload=bytes(payload))
        except Exception:
            return Reject(INTERNAL)
