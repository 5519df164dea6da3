"""Decoder fuzz, 100,000 payloads in the default suite (a few seconds).

Hypothesis draws 200 seed batches (valid ones, with random boots, seqs, times, readers and
extra keys); each seed is then mutated 500 times by a seeded byte-level mutator (flips,
insertions, deletions, truncations, token splices). Every one of the 100,000 payloads must
decode to a Batch or a Reject without raising, and whatever is accepted must be storable. The
fast (msgspec) path must agree with the checked one on everything it accepts (D18).
The long pure-hypothesis run is ``python -m bench fuzz_decoder``.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.ingest import decode as d
from cloud.ingest.decode import Batch, Reject, decode

SEEDS = 200
MUTATIONS = 500
TOPIC = "qadam/v1/dev/gate-1/events"
TOKENS = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"-", b"0", b"1e999", b"null", b"true",
          b"\\u0000", b"\\ud800", b"\xff", b"\xc3", b"9" * 25, b'"seq"', b'"boot"', b'"v"',
          b"NaN", b"Infinity", b" ", b"\x00"]  # fmt: skip

events_st = st.builds(
    dict,
    step=st.integers(1, 2**20),
    t=st.integers(0, 2**34),
    sync=st.sampled_from([0, 1]),
    up=st.integers(0, 2**40),
    kind=st.sampled_from(["tap", "x" * 64, "é"]),
    reader=st.sampled_from(["in", "out", "canteen"]),
    card=st.binary(min_size=8, max_size=8).map(bytes.hex),
    result=st.sampled_from(["granted", "denied"]),
    reason=st.sampled_from(["ok", "unknown_card"]),
)


def _seed_doc(boot: int, start: int, evs: list[dict[str, Any]],
              extra: dict[str, int]) -> dict[str, Any]:  # fmt: skip
    out, seq = [], start
    for e in evs:
        seq += e.pop("step")
        out.append({"boot": boot, "seq": seq, **e})
    return {"v": 1, "dev": "gate-1", "boot": boot, "events": out, **extra}


seed_st = st.builds(
    _seed_doc,
    boot=st.integers(0, 2**63 - 1),
    start=st.integers(0, 2**62),
    evs=st.lists(events_st, min_size=1, max_size=32),
    extra=st.dictionaries(st.sampled_from(["x", "diag", "v2"]), st.integers(), max_size=2),
)  # fmt: skip


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:  # flip a byte
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert a token
            b[i:i] = rng.choice(TOKENS)
        elif op == 2:  # delete a span
            del b[i : i + rng.randint(1, 8)]
        elif op == 3:  # truncate
            del b[i:]
        elif op == 4:  # duplicate a span
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[j : j + rng.randint(1, 40)]
        else:  # replace a span with random bytes
            b[i : i + rng.randint(0, 4)] = rng.randbytes(rng.randint(1, 4))
    return bytes(b)


def check_total(result: object) -> None:
    assert isinstance(result, Batch | Reject)
    if isinstance(result, Batch):
        assert 1 <= len(result.events) <= 32
        seqs = [e.seq for e in result.events]
        assert seqs == sorted(set(seqs))
        for e in result.events:
            assert e.boot == result.boot
            assert 0 <= e.boot < 2**63 and 1 <= e.seq < 2**63 and 0 <= e.up < 2**63
            assert 0 <= e.t <= d.T_MAX
            for s in (e.kind, e.reason, e.reader, e.card, e.result):
                s.encode("utf-8")
                assert "\x00" not in s
    else:
        assert result.reason in d.REASONS


COUNT = {"payloads": 0, "batches": 0, "fast": 0}


def same_path(payload: bytes) -> None:
    """What the fast (msgspec) path accepts, the checked path accepts as the same batch."""
    fast = d._decode_fast(TOPIC, payload, "gate-1")
    if fast is None:
        return
    try:
        checked: object = d._decode_checked(TOPIC, payload, "gate-1")
    except d._Invalid as e:
        checked = e
    assert checked == fast, (payload, checked)


@settings(max_examples=SEEDS, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(doc=seed_st, seed=st.integers(0, 2**32))
def _fuzz_one_seed(doc: dict[str, Any], seed: int) -> None:
    payload = json.dumps(doc, separators=(",", ":")).encode()
    got = decode(TOPIC, payload)
    assert isinstance(got, Batch) == (len(payload) <= d.MAX_PAYLOAD), got
    if isinstance(got, Batch):
        # a valid batch takes the fast path (else a replay would silently run slow)
        assert d._decode_fast(TOPIC, payload, "gate-1") == got
    rng = random.Random(seed)
    for _ in range(MUTATIONS - 1):
        mutant = mutate(payload, rng)
        r = decode(TOPIC, mutant)
        check_total(r)
        same_path(mutant)
        COUNT["batches"] += isinstance(r, Batch)
        COUNT["fast"] += d._decode_fast(TOPIC, mutant, "gate-1") is not None
    COUNT["payloads"] += MUTATIONS


def test_decoder_fuzz_100k() -> None:
    COUNT.update(payloads=0, batches=0, fast=0)
    _fuzz_one_seed()
    assert COUNT["payloads"] >= 100_000
    # the mutator is not trivially destructive: some mutants are still valid batches
    assert 0 < COUNT["batches"] < COUNT["payloads"]
    assert 0 < COUNT["fast"] <= COUNT["batches"]


_value_st = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2**64), st.floats(allow_nan=False),
    st.sampled_from(["", "in", "out", "canteen", "granted", "denied", "tap", "ok", "\x00",
                     "x" * 64, "x" * 65, "0123456789abcdef", "0123456789ABCDEF",
                     "0123456789abcdef\n", "é" * 64, "😀"]),
    st.text(max_size=70), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)  # fmt: skip
_EVENT_KEYS = ["boot", "seq", "t", "sync", "up", "kind", "reader", "card", "result", "reason",
               "dish", "x"]  # fmt: skip
_BATCH_KEYS = ["v", "dev", "boot", "events", "x"]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=seed_st,
    event_changes=st.lists(
        st.tuples(st.integers(0, 31), st.sampled_from(_EVENT_KEYS), _value_st), max_size=3
    ),
    batch_changes=st.dictionaries(st.sampled_from(_BATCH_KEYS), _value_st, max_size=1),
    dropped=st.lists(st.tuples(st.integers(0, 31), st.sampled_from(_EVENT_KEYS)), max_size=2),
)
def test_fast_and_checked_decoding_agree(
    doc: dict[str, Any],
    event_changes: list[tuple[int, str, Any]],
    batch_changes: dict[str, Any],
    dropped: list[tuple[int, str]],
) -> None:
    evs = doc["events"]
    for i, key, value in event_changes:
        evs[i % len(evs)][key] = value
    for i, key in dropped:
        evs[i % len(evs)].pop(key, None)
    doc.update(batch_changes)
    payload = json.dumps(doc, separators=(",", ":")).encode()
    same_path(payload)
    got = decode(TOPIC, payload)
    check_total(got)
    if not event_changes and not batch_changes and not dropped and len(payload) <= d.MAX_PAYLOAD:
        assert d._decode_fast(TOPIC, payload, "gate-1") == got  # valid: the fast path took it


_EDGES = [
    ("card", "0123456789ABCDEF"), ("card", "0123456789abcdef\n"), ("card", "0123456789abcde"),
    ("kind", "x" * 64), ("kind", "x" * 65), ("kind", "é" * 64), ("kind", ""), ("kind", "a\x00"),
    ("reason", "\n"), ("reason", "😀"), ("sync", True), ("sync", 2), ("sync", 1.0),
    ("seq", 0), ("seq", 2**63 - 1), ("seq", 2**63), ("t", d.T_MAX), ("t", d.T_MAX + 1),
    ("t", -1), ("up", 2**64), ("boot", True), ("reader", "IN"), ("result", "granted "),
    ("dish", 0), ("dish", "7"), ("dish", 2**63), ("dish", None), ("dish", 7), ("x", [[[]]]),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), _EDGES)
def test_fast_and_checked_decoding_agree_on_edges(key: str, value: Any) -> None:
    doc = {"v": 1, "dev": "gate-1", "boot": 0, "events": [
        {"boot": 0, "seq": 5, "t": 10, "sync": 1, "up": 3, "kind": "tap", "reader": "in",
         "card": "0123456789abcdef", "result": "granted", "reason": "ok", key: value}]}  # fmt: skip
    payload = json.dumps(doc, separators=(",", ":")).encode()
    same_path(payload)
    for top in ("v", "boot", "dev"):
        same_path(json.dumps({**doc, top: value}, separators=(",", ":")).encode())
