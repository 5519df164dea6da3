"""The batch decoder: accepts exactly what protocol.md allows, rejects the rest, never raises."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cloud_helpers import CARD_A, batch_doc, dumps, event
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from cloud.ingest import decode as d
from cloud.ingest.decode import Batch, Reject, decode

TOPIC = "qadam/v1/dev/gate-1/events"


def test_good_batch() -> None:
    doc = batch_doc(seqs=[12, 13, 14])
    doc["events"][1]["sync"] = 0
    doc["events"][2]["extra_diag"] = {"rssi": -60}  # unknown keys are ignored
    doc["fw"] = "0.1.0"
    payload = dumps(doc)
    got = decode(TOPIC, payload)
    assert isinstance(got, Batch), got
    assert (got.device, got.boot, got.first, got.last) == ("gate-1", 7, 12, 14)
    assert [e.seq for e in got.events] == [12, 13, 14]
    assert [e.sync for e in got.events] == [1, 0, 1]
    e = got.events[0]
    assert (e.boot, e.t, e.up, e.kind, e.reader, e.card, e.result, e.reason) == (
        7, doc["events"][0]["t"], 12000, "tap", "in", CARD_A, "granted", "ok",
    )  # fmt: skip
    assert got.payload == payload and got.topic == TOPIC


def test_prefix_with_slashes_and_max_batch() -> None:
    got = decode("school/a/v1/dev/g-9/events", dumps(batch_doc(dev="g-9", seqs=range(1, 33))))
    assert isinstance(got, Batch) and len(got.events) == 32


def test_boot_zero_and_gapped_seq_are_fine() -> None:
    got = decode(TOPIC, dumps(batch_doc(boot=0, seqs=[1, 5, 9])))
    assert isinstance(got, Batch) and got.boot == 0


@pytest.mark.parametrize(
    "bad_topic",
    [
        "qadam/v1/dev/gate-1/ack",
        "qadam/v2/dev/gate-1/events",
        "v1/dev/gate-1/events",  # no prefix
        "qadam/v1/dev/Gate-1/events",  # device id must be lowercase
        "qadam/v1/dev/-gate/events",
        "qadam/v1/dev/" + "a" * 33 + "/events",
        "qadam/v1/dev//events",
        "/v1/dev/gate-1/events",
        "",
    ],
)
def test_bad_topic(bad_topic: str) -> None:
    got = decode(bad_topic, dumps(batch_doc()))
    assert isinstance(got, Reject) and got.reason == d.BAD_TOPIC
    assert not got.ackable  # no device we could ack to


def _mut(path: list[Any], value: Any = ..., drop: bool = False) -> bytes:
    doc = batch_doc()
    target: Any = doc
    for p in path[:-1]:
        target = target[p]
    if drop:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return dumps(doc)


REJECTS: list[tuple[str, bytes, str]] = [
    ("not utf8", b'{"v":1,"dev":"gate-1","boot":7,"events":[]}\xff', d.NOT_UTF8),
    ("cesu surrogate", b'{"v":1,"x":"\xed\xa0\x80"}', d.NOT_UTF8),
    ("not json", b'{"v":1,', d.NOT_JSON),
    ("empty", b"", d.NOT_JSON),
    ("NaN", b'{"v":NaN}', d.NOT_JSON),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, d.NOT_JSON),
    ("array", b"[1,2]", d.NOT_OBJECT),
    ("string", b'"hi"', d.NOT_OBJECT),
    ("v missing", _mut(["v"], drop=True), d.BAD_VERSION),
    ("v 2", _mut(["v"], 2), d.BAD_VERSION),
    ("v string", _mut(["v"], "1"), d.BAD_VERSION),
    ("v float", _mut(["v"], 1.0), d.BAD_VERSION),
    ("v true", _mut(["v"], True), d.BAD_VERSION),
    ("dev other", _mut(["dev"], "gate-2"), d.DEV_MISMATCH),
    ("dev missing", _mut(["dev"], drop=True), d.DEV_MISMATCH),
    ("boot missing", _mut(["boot"], drop=True), d.BAD_BOOT),
    ("boot negative", _mut(["boot"], -1), d.BAD_BOOT),
    ("boot string", _mut(["boot"], "7"), d.BAD_BOOT),
    ("boot bool", _mut(["boot"], True), d.BAD_BOOT),
    ("boot > int8", _mut(["boot"], 2**63), d.BAD_BOOT),
    ("events missing", _mut(["events"], drop=True), d.BAD_EVENTS),
    ("events object", _mut(["events"], {}), d.BAD_EVENTS),
    ("events empty", _mut(["events"], []), d.BAD_EVENTS),
    ("33 events", dumps(batch_doc(seqs=range(1, 34))), d.BAD_EVENTS),
    ("event not object", _mut(["events", 1], [1]), d.BAD_EVENT),
    ("seq 0", _mut(["events", 0, "seq"], 0), d.BAD_EVENT),
    ("seq float", _mut(["events", 0, "seq"], 1.5), d.BAD_EVENT),
    ("seq > int8", _mut(["events", 2, "seq"], 2**63), d.BAD_EVENT),
    ("t float", _mut(["events", 0, "t"], 1.5), d.BAD_EVENT),
    ("t negative", _mut(["events", 0, "t"], -1), d.BAD_EVENT),
    ("t beyond 9999", _mut(["events", 0, "t"], 10**12), d.BAD_EVENT),
    ("sync 2", _mut(["events", 0, "sync"], 2), d.BAD_EVENT),
    ("sync true", _mut(["events", 0, "sync"], True), d.BAD_EVENT),
    ("up negative", _mut(["events", 0, "up"], -5), d.BAD_EVENT),
    ("up missing", _mut(["events", 0, "up"], drop=True), d.BAD_EVENT),
    ("kind empty", _mut(["events", 0, "kind"], ""), d.BAD_EVENT),
    ("kind number", _mut(["events", 0, "kind"], 1), d.BAD_EVENT),
    ("kind lone surrogate", _mut(["events", 0, "kind"], "\ud800"), d.BAD_EVENT),
    ("reason NUL", _mut(["events", 0, "reason"], "o\x00k"), d.BAD_EVENT),
    ("reason too long", _mut(["events", 0, "reason"], "x" * 65), d.BAD_EVENT),
    ("reader side", _mut(["events", 0, "reader"], "side"), d.BAD_EVENT),
    ("result ok", _mut(["events", 0, "result"], "ok"), d.BAD_EVENT),
    ("card upper", _mut(["events", 0, "card"], CARD_A.upper()), d.BAD_EVENT),
    ("card short", _mut(["events", 0, "card"], CARD_A[:15]), d.BAD_EVENT),
    ("card newline", _mut(["events", 0, "card"], CARD_A + "\n"), d.BAD_EVENT),
    ("card missing", _mut(["events", 1, "card"], drop=True), d.BAD_EVENT),
    ("event boot other", _mut(["events", 1, "boot"], 8), d.BOOT_MISMATCH),
    ("seq equal", dumps(batch_doc(seqs=[3, 3])), d.SEQ_ORDER),
    ("seq decreasing", dumps(batch_doc(seqs=[4, 3, 5])), d.SEQ_ORDER),
]


@pytest.mark.parametrize(
    ("payload", "reason"), [r[1:] for r in REJECTS], ids=[r[0] for r in REJECTS]
)
def test_reject_reason(payload: bytes, reason: str) -> None:
    got = decode(TOPIC, payload)
    assert isinstance(got, Reject), got
    assert got.reason == reason, got
    assert got.reason in d.REASONS
    assert got.device == "gate-1" and got.topic == TOPIC and got.payload == payload
    assert got.detail


def test_every_decoder_reason_is_exercised() -> None:
    covered = {r[2] for r in REJECTS} | {d.BAD_TOPIC, d.TOO_LARGE}
    assert covered == d.REASONS - {d.INTERNAL}


def test_reject_with_readable_range_is_ackable() -> None:
    got = decode(TOPIC, _mut(["events", 1, "card"], "nope"))
    assert isinstance(got, Reject) and got.reason == d.BAD_EVENT
    assert (got.device, got.boot, got.first, got.last) == ("gate-1", 7, 1, 3)
    assert got.ackable


def test_reject_without_range_is_not_ackable() -> None:
    got = decode(TOPIC, b"\x00garbage")
    assert isinstance(got, Reject) and not got.ackable


def test_too_large_is_rejected_but_ackable() -> None:
    doc = batch_doc(seqs=range(5, 9))
    doc["pad"] = "x" * (d.MAX_PAYLOAD)
    payload = dumps(doc)
    assert len(payload) > d.MAX_PAYLOAD
    got = decode(TOPIC, payload)
    assert isinstance(got, Reject) and got.reason == d.TOO_LARGE
    assert (got.boot, got.first, got.last) == (7, 5, 8)


def test_exactly_max_size_is_accepted() -> None:
    doc = batch_doc()
    doc["pad"] = ""
    base = len(dumps(doc))
    doc["pad"] = "x" * (d.MAX_PAYLOAD - base)
    payload = dumps(doc)
    assert len(payload) == d.MAX_PAYLOAD
    assert isinstance(decode(TOPIC, payload), Batch)


def test_accepts_bytearray_and_memoryview() -> None:
    p = dumps(batch_doc())
    assert isinstance(decode(TOPIC, bytearray(p)), Batch)
    assert isinstance(decode(TOPIC, memoryview(p)), Batch)


def test_non_str_topic_does_not_raise() -> None:
    got = decode(None, b"{}")  # type: ignore[arg-type]
    assert isinstance(got, Reject)


# -- fuzzing -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5)
    ),
    max_leaves=20,
)
FUZZ = hsettings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))


def _check_total(result: object) -> None:
    assert isinstance(result, Batch | Reject)
    if isinstance(result, Batch):
        # whatever is accepted is storable: bigint range, valid text, no NUL
        assert 1 <= len(result.events) <= 32
        for e in result.events:
            assert 0 <= e.boot < 2**63 and 1 <= e.seq < 2**63 and 0 <= e.up < 2**63
            for s in (e.kind, e.reason, e.reader, e.card, e.result):
                s.encode("utf-8")
                assert "\x00" not in s
    else:
        assert result.reason in d.REASONS


@FUZZ
@given(topic=st.text(max_size=60), payload=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_never_raise(topic: str, payload: bytes) -> None:
    _check_total(decode(topic, payload))


@FUZZ
@given(
    data=st.data(),
    path_choice=st.integers(min_value=0, max_value=10_000),
    value=json_values,
)
def test_fuzz_mutated_batches_never_raise(
    data: st.DataObject, path_choice: int, value: Any
) -> None:
    doc = batch_doc(seqs=range(1, data.draw(st.integers(1, 4)) + 1))
    keys = ["v", "dev", "boot", "events", "extra"]
    ev_keys = list(event(1)) + ["x"]
    if path_choice % 2:
        doc[keys[path_choice % len(keys)]] = value
    else:
        i = path_choice % len(doc["events"])
        doc["events"][i][ev_keys[path_choice % len(ev_keys)]] = value
    payload = json.dumps(doc).encode("utf-8", "surrogatepass")
    _check_total(decode(TOPIC, payload))


@FUZZ
@given(
    boot=st.integers(0, 2**63 - 1),
    start=st.integers(1, 2**40),
    steps=st.lists(st.integers(1, 1000), max_size=31),
    t=st.integers(0, 2**32),
    sync=st.sampled_from([0, 1]),
    reader=st.sampled_from(["in", "out", "canteen"]),
    card=st.binary(min_size=8, max_size=8).map(bytes.hex),
)
def test_fuzz_valid_batches_are_accepted(
    boot: int, start: int, steps: list[int], t: int, sync: int, reader: str, card: str
) -> None:
    seqs = [start]
    for s in steps:
        seqs.append(seqs[-1] + s)
    doc = batch_doc(boot=boot, seqs=seqs, t=t, sync=sync, reader=reader, card=card)
    got = decode(TOPIC, dumps(doc))
    assert isinstance(got, Batch), got
    assert [e.seq for e in got.events] == seqs and got.boot == boot


@pytest.mark.parametrize("key", ["reader", "result"])
@pytest.mark.parametrize("value", [["in"], {"in": 1}])
def test_unhashable_reader_or_result_is_a_bad_event_with_its_range(key: str, value: Any) -> None:
    doc = batch_doc(seqs=[4, 5])
    doc["events"][1][key] = value
    got = decode("qadam/v1/dev/gate-1/events", dumps(doc))
    assert isinstance(got, Reject)
    assert (got.reason, got.detail) == (d.BAD_EVENT, f"events[1].{key} invalid")
    assert (got.device, got.boot, got.first, got.last) == ("gate-1", 7, 4, 5) and got.ackable
